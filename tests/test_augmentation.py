"""The training augmentation: every configurable part builds, keeps uint8 faces, the YIQ hue
turn does what its algebra says, and only a flip counts as light enough for the frozen
phase's feature cache."""

from __future__ import annotations

import pytest
import torch

from agegender.data.augment import RandomHueRotation, build_augmentation, rotate_hue
from agegender.data.features import only_flip

EVERY_PART = {
    "hflip": True,
    "affine": {"degrees": 10, "translate": [0.05, 0.05], "scale": [0.9, 1.1]},
    "trivial": True,
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
    "hue_rotation": 0.02,
    "sharpness": {"factor": 2.0, "p": 0.5},
    "blur": {"kernel": 5, "sigma": [0.1, 1.5], "p": 0.3},
    "grayscale": 0.1,
    "erasing": {"p": 0.25, "scale": [0.02, 0.2]},
}


def test_every_part_builds_and_keeps_uint8_faces_of_the_same_size() -> None:
    transform = build_augmentation(EVERY_PART)
    assert transform is not None and len(transform.transforms) == len(EVERY_PART)
    torch.manual_seed(0)
    face = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    outputs = [transform(face) for _ in range(30)]
    assert all(out.dtype == torch.uint8 and out.shape == face.shape for out in outputs)
    assert sum(not torch.equal(out, face) for out in outputs) >= 25  # it really augments


def test_switched_off_parts_build_nothing() -> None:
    off = {key: None for key in EVERY_PART} | {"hflip": False, "trivial": False}
    assert build_augmentation(off) is None
    assert build_augmentation(None) is None


def test_only_a_flip_lets_the_frozen_phase_cache_features() -> None:
    assert only_flip({"hflip": True, "affine": None, "trivial": False, "blur": None})
    assert only_flip(None)
    for key in EVERY_PART.keys() - {"hflip"}:
        assert not only_flip({"hflip": True, key: EVERY_PART[key]}), key


def luma(image: torch.Tensor) -> torch.Tensor:
    red, green, blue = image.double().unbind(-3)
    return 0.299 * red + 0.587 * green + 0.114 * blue


def test_a_half_turn_of_hue_mirrors_every_colour_through_its_grey() -> None:
    # YIQ keeps Y and negates I and Q under a half turn, so each pixel c becomes 2·Y(c) − c
    torch.manual_seed(0)
    image = torch.rand(3, 6, 6) * 0.5 + 0.25  # away from 0 and 1: nothing clamps
    expected = 2 * luma(image).unsqueeze(0) - image.double()
    assert torch.allclose(rotate_hue(image, 0.5).double(), expected, atol=1e-5)


def test_a_hue_turn_keeps_grey_and_luma_and_turns_back() -> None:
    grey = torch.full((3, 4, 4), 90, dtype=torch.uint8)
    assert torch.equal(rotate_hue(grey, 0.2), grey)
    torch.manual_seed(1)
    image = torch.rand(3, 8, 8) * 0.5 + 0.25
    turned = rotate_hue(image, 0.05)
    assert (turned - image).abs().max() > 0.01  # the colours moved
    assert torch.allclose(luma(turned), luma(image), atol=1e-5)  # the brightness did not
    assert torch.allclose(rotate_hue(turned, -0.05), image, atol=1e-5)


def test_random_hue_rotation_draws_per_face_and_refuses_more_than_half_a_turn() -> None:
    torch.manual_seed(2)
    face = torch.randint(40, 216, (3, 16, 16), dtype=torch.uint8)
    turn = RandomHueRotation(0.05)
    outputs = [turn(face) for _ in range(5)]
    assert all(out.dtype == torch.uint8 for out in outputs)
    assert any(not torch.equal(outputs[0], out) for out in outputs[1:])  # a new angle each call
    with pytest.raises(ValueError, match="hue=0.7"):
        RandomHueRotation(0.7)
