"""The training augmentation: every configurable part builds, keeps uint8 faces, and only a
flip counts as light enough for the frozen phase's feature cache."""

from __future__ import annotations

import pytest
import torch

from agegender.data.augment import build_augmentation
from agegender.data.features import only_flip
from agegender.errors import UserError

EVERY_PART = {
    "hflip": True,
    "affine": {"degrees": 10, "translate": [0.05, 0.05], "scale": [0.9, 1.1]},
    "trivial": True,
    "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02},
    "sharpness": {"factor": 2.0, "p": 0.5},
    "blur": {"kernel": 5, "sigma": [0.1, 1.5], "p": 0.3},
    "jpeg": {"quality": [50, 95], "p": 0.5},
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


def test_jpeg_compression_changes_a_face_and_refuses_a_bad_quality() -> None:
    transform = build_augmentation({"jpeg": {"quality": [20, 20], "p": 1.0}})
    assert transform is not None
    face = torch.linspace(0, 255, 3 * 64 * 64).reshape(3, 64, 64).to(torch.uint8)
    face[:, ::2] = 255 - face[:, ::2]  # stripes: detail that compression loses
    out = transform(face)
    assert out.dtype == torch.uint8 and out.shape == face.shape
    assert (out.float() - face.float()).abs().mean() > 2
    with pytest.raises(UserError, match="data.augment.jpeg.quality"):
        build_augmentation({"jpeg": {"quality": [95, 50]}})


def test_switched_off_parts_build_nothing() -> None:
    off = {key: None for key in EVERY_PART} | {"hflip": False, "trivial": False}
    assert build_augmentation(off) is None
    assert build_augmentation(None) is None


def test_only_a_flip_lets_the_frozen_phase_cache_features() -> None:
    assert only_flip({"hflip": True, "affine": None, "trivial": False, "blur": None})
    assert only_flip(None)
    for key in EVERY_PART.keys() - {"hflip"}:
        assert not only_flip({"hflip": True, key: EVERY_PART[key]}), key
