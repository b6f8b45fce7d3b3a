"""Parity: the exported model must answer what the PyTorch network answers, on the same batch.

The batch is real faces from the run's saved split when its files are at hand (a few,
decoded through the one preprocessing path), else generated pixels. Each export is run at
the full batch and at batch 1 (`agegender.deployed.measure`), which also proves the batch
dimension is really dynamic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agegender.data.split import read_split_if_present
from agegender.deployed import AGE_TOLERANCE, P_FEMALE_TOLERANCE, Parity, ParityError
from agegender.preprocess import ImageDecodeError, decode_rgb, to_batch


def split_images(split_file: str | Path | None, size: int, count: int) -> np.ndarray | None:
    """Up to `count` test (then val) images named by a saved split, or None if unavailable."""
    saved = read_split_if_present(split_file)
    if saved is None:
        return None
    root, names = saved.root, saved.relpaths("test", "val")
    images = []
    for name in names:
        try:
            images.append(decode_rgb((root / name).read_bytes()))
        except (OSError, ImageDecodeError):
            continue
        if len(images) == count:
            break
    return to_batch(images, size) if images else None


def generated_images(size: int, count: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields plus noise: a spread of inputs when no real face is at hand."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, (count, 3, 1, 1)) * ramp[None, None, :, None]
    base = base + rng.uniform(0, 255, (count, 3, 1, 1)) * ramp[None, None, None, :]
    noise = rng.normal(0, 25, (count, 3, size, size))
    return np.clip(base / 2 + noise, 0, 255).astype(np.uint8)


def parity_batch(meta: dict[str, Any], count: int = 16) -> tuple[np.ndarray, str]:
    """The images parity is measured on, and where they came from."""
    size = int(meta["image_size"])
    real = split_images(meta.get("split_file"), size, count)
    if real is not None:
        return real, f"faces from {meta['split_file']}"
    return generated_images(size, count), "generated images (the run's split files are absent)"


def check(
    parity: Parity,
    target: str,
    age_tolerance: float = AGE_TOLERANCE,
    p_tolerance: float = P_FEMALE_TOLERANCE,
) -> None:
    """Raise ParityError when either difference exceeds its tolerance."""
    if parity.within(age_tolerance, p_tolerance):
        return
    raise ParityError(
        f"{target}: export does not match PyTorch ({parity.line()}; allowed {age_tolerance} "
        f"years and {p_tolerance} in p_female). Nothing was written; try another opset "
        f"(opset=18) or report the checkpoint as a bug"
    )
