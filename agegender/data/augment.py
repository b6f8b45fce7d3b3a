"""The training augmentation: torchvision v2 transforms on uint8 [3,H,W] faces, built from
`data.augment`, each part switched off by null."""

from __future__ import annotations

from typing import Any

from torchvision.transforms import v2

from agegender.errors import UserError


def build_augmentation(config: dict[str, Any] | None) -> v2.Compose | None:
    """torchvision v2 transforms on uint8 [3,H,W] tensors; each part switched off by null."""
    config = config or {}
    steps: list[v2.Transform] = []
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
    jpeg = config.get("jpeg")
    if jpeg:  # compressed again at a random quality: artefacts are not a sign of age
        quality = tuple(int(q) for q in jpeg.get("quality", (50, 95)))
        if len(quality) != 2 or not 1 <= quality[0] <= quality[1] <= 100:
            raise UserError(
                f"data.augment.jpeg.quality={list(quality)}: give [low, high] within 1..100"
            )
        steps.append(v2.RandomApply([v2.JPEG(quality)], p=float(jpeg.get("p", 0.5))))
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
