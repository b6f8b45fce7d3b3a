"""The training augmentation: torchvision v2 transforms on uint8 [3,H,W] faces, each part
switched off by null, and a hue turn done as a rotation of the YIQ colour plane (a 3×3
matrix product per face, where torchvision's ColorJitter hue shift is an RGB→HSV→RGB round
trip that costs more than every other part together on a CPU: docs/accuracy.md)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2

# RGB to YIQ (NTSC): Y is the luma, I and Q the colour plane a hue turn rotates.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def hue_rotation_matrix(factor: float) -> torch.Tensor:
    """The RGB matrix that turns every colour by `factor` of a full turn about the grey axis:
    grey stays grey, the luma is kept."""
    angle = 2.0 * math.pi * factor
    cos, sin = math.cos(angle), math.sin(angle)
    turn = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], dtype=torch.float64)
    return (_YIQ_TO_RGB @ turn @ _RGB_TO_YIQ).float()


def rotate_hue(image: torch.Tensor, factor: float) -> torch.Tensor:
    """[..., 3, H, W] RGB, uint8 or float in 0–1, with its colours turned by `factor`."""
    turned = torch.einsum("ij,...jhw->...ihw", hue_rotation_matrix(factor), image.float())
    if image.is_floating_point():
        return turned.clamp_(0.0, 1.0).to(image.dtype)
    return turned.clamp_(0.0, 255.0).round_().to(image.dtype)


class RandomHueRotation(torch.nn.Module):
    """Each face's colours turned by a random fraction of a full turn in [−hue, hue]."""

    def __init__(self, hue: float) -> None:
        super().__init__()
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue={hue}: give a fraction of a full turn from 0 to 0.5")
        self.hue = float(hue)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return rotate_hue(image, float(torch.empty(()).uniform_(-self.hue, self.hue)))

    def extra_repr(self) -> str:
        return f"hue={self.hue}"


def build_augmentation(config: dict[str, Any] | None) -> v2.Compose | None:
    """torchvision v2 transforms on uint8 [3,H,W] tensors; each part switched off by null."""
    config = config or {}
    steps: list[Any] = []
    if config.get("hflip"):
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    affine = config.get("affine")
    if affine:
        steps.append(
            v2.RandomAffine(
                degrees=float(affine.get("degrees", 0)),
                translate=tuple(affine["translate"]) if affine.get("translate") else None,
                scale=tuple(affine["scale"]) if affine.get("scale") else None,
            )
        )
    if config.get("trivial"):
        steps.append(v2.TrivialAugmentWide())
    jitter = config.get("color_jitter")
    if jitter:
        steps.append(
            v2.ColorJitter(
                brightness=jitter.get("brightness", 0),
                contrast=jitter.get("contrast", 0),
                saturation=jitter.get("saturation", 0),
                hue=jitter.get("hue", 0),
            )
        )
    if config.get("hue_rotation"):
        steps.append(RandomHueRotation(float(config["hue_rotation"])))
    sharpness = config.get("sharpness")
    if sharpness:  # sharper and softer faces than the training photographs' own
        steps.append(
            v2.RandomAdjustSharpness(float(sharpness["factor"]), p=float(sharpness.get("p", 0.5)))
        )
    blur = config.get("blur")
    if blur:
        kernel = int(blur.get("kernel", 5))
        sigma = tuple(blur.get("sigma", (0.1, 1.5)))
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma)], p=float(blur.get("p", 0.3))))
    if config.get("grayscale"):
        steps.append(v2.RandomGrayscale(p=float(config["grayscale"])))
    erasing = config.get("erasing")
    if erasing:
        steps.append(
            v2.RandomErasing(
                p=float(erasing.get("p", 0.25)), scale=tuple(erasing.get("scale", (0.02, 0.2)))
            )
        )
    return v2.Compose(steps) if steps else None
