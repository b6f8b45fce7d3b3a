"""Decode-once image store: every image decoded, framed and resized once into a memory map.

With `data.crop` set, each photograph goes through the face path (detect, align, crop) while
the store is built; otherwise it is centre-cropped and resized. The store is keyed by the
content digests of the file list, the image size and the crop settings, so it is rebuilt
exactly when one of them changes. It is written under a temporary name and renamed into
place only when complete; the metadata file is renamed last and is what marks a store as
usable, so an interrupted build is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from agegender.data.utkface import Sample
from agegender.faces.photo import OUTCOMES, FramedPhoto, PhotoCrop
from agegender.io import atomic_target, remove_stale_temps, write_atomic
from agegender.preprocess import ImageDecodeError, decode_bgr, square_resize

log = logging.getLogger(__name__)

STORE_VERSION = 2  # bump when the preprocessing changes what a stored image looks like
UNREADABLE = "unreadable"  # the outcome of a file that did not decode


def store_key(samples: Sequence[Sample], image_size: int, crop: PhotoCrop | None = None) -> str:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"v{STORE_VERSION}:{image_size}:".encode())
    if crop is not None:
        digest.update(crop.key().encode())
    for sample in samples:
        digest.update(sample.digest.encode())
    return digest.hexdigest()


@dataclass
class ImageStore:
    """uint8 images [N, 3, S, S] (memory-mapped) in sample order, and which ones decoded."""

    path: Path
    images: np.ndarray
    valid: np.ndarray
    decoded: int  # images decoded by this call: 0 when an existing store was reused
    # per image: how it was framed (faces.photo.OUTCOMES), or "unreadable"
    outcomes: list[str]
    # per image: the face's eye distance in the photograph's pixels (None: no landmarks);
    # empty for stores built before it was recorded
    eye_px: list[float | None] = field(default_factory=list)

    def outcome_counts(self, rows: Sequence[int] | None = None) -> dict[str, int]:
        """How the images (or only these rows) were framed, counted by outcome."""
        outcomes = self.outcomes if rows is None else [self.outcomes[row] for row in rows]
        return {name: outcomes.count(name) for name in (*OUTCOMES, UNREADABLE)}

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def _paths(key: str, cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"images-{key}.npy", cache_dir / f"images-{key}.json"


def open_store(path: Path) -> np.ndarray:
    """Open a store's image array read-only (each DataLoader worker opens its own map)."""
    return np.load(path, mmap_mode="r")


Cropper = Callable[[np.ndarray], FramedPhoto]


def decode_for_store(
    file: Path, image_size: int, cropper: Cropper | None = None
) -> tuple[np.ndarray | None, str, float | None]:
    """One image file as the store holds it (uint8 [3, S, S] RGB), its outcome and its face's
    eye distance in pixels; None and "unreadable" if it does not decode. `cropper` is the
    face path (BGR photo -> RGB crop)."""
    try:
        bgr = decode_bgr(file.read_bytes())
    except (ImageDecodeError, OSError):
        return None, UNREADABLE, None
    if cropper is None:
        rgb = cv2.cvtColor(square_resize(bgr, image_size), cv2.COLOR_BGR2RGB)
        return rgb.transpose(2, 0, 1), "centre", None
    framed = cropper(bgr)
    return framed.crop.transpose(2, 0, 1), framed.outcome, framed.eye_px


def open_or_build(
    root: Path,
    samples: Sequence[Sample],
    image_size: int,
    cache_dir: str | Path,
    progress: bool = True,
    workers: int | None = None,
    crop: PhotoCrop | None = None,
) -> ImageStore:
    """Reuse the store for these samples, size and crop settings, or build it: every image
    decoded (and, with `crop`, run through the face path) once.

    Photographs where `crop` finds no face are centre-cropped, or marked not valid when its
    `on_miss` is skip."""
    cache_dir = Path(cache_dir)
    key = store_key(samples, image_size, crop)
    array_path, meta_path = _paths(key, cache_dir)
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        images = open_store(array_path)
        if images.shape == (len(samples), 3, image_size, image_size):
            valid = np.array(meta["valid"], dtype=bool)
            eye_px = list(meta.get("eye_px", []))
            return ImageStore(array_path, images, valid, 0, list(meta["outcomes"]), eye_px)
        log.warning("image store %s has an unexpected shape; rebuilding it", array_path)

    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(cache_dir, "*images-*.tmp-*"):  # a killed build's leftovers
        log.info("removed %s, left by a build that was killed", stale.name)
    with atomic_target(array_path) as array_tmp:
        valid, outcomes, eye_px = _build_store(
            array_tmp, root, samples, image_size, crop, progress, workers
        )
    write_atomic(  # last: its presence marks the store complete
        meta_path,
        json.dumps(
            {
                "version": STORE_VERSION,
                "image_size": image_size,
                "crop": None if crop is None else json.loads(crop.key()),
                "valid": valid.tolist(),
                "outcomes": outcomes,
                "eye_px": eye_px,
            }
        ),
    )
    return ImageStore(array_path, open_store(array_path), valid, len(samples), outcomes, eye_px)


def _build_store(
    array_path: Path,
    root: Path,
    samples: Sequence[Sample],
    image_size: int,
    crop: PhotoCrop | None,
    progress: bool,
    workers: int | None,
) -> tuple[np.ndarray, list[str], list[float | None]]:
    """Decode (and frame) every photograph into a new uint8 array at `array_path`."""
    shape = (len(samples), 3, image_size, image_size)
    images = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8, shape=shape)
    valid = np.zeros(len(samples), dtype=bool)
    outcomes: list[str] = []
    eye_px: list[float | None] = []
    files = [root / sample.relpath for sample in samples]
    cropper = crop.cropper(image_size) if crop is not None else None
    skip_misses = crop is not None and crop.on_miss == "skip"
    action = "Decoding" if crop is None else "Decoding and framing faces of"
    # OpenCV releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        decoded = pool.map(
            lambda file: decode_for_store(file, image_size, cropper), files, chunksize=32
        )
        steps = track(
            decoded,
            total=len(files),
            description=f"{action} {len(files)} images at {image_size}px (once)",
            disable=not progress,
        )
        for index, (image, outcome, eyes) in enumerate(steps):
            outcomes.append(outcome)
            eye_px.append(None if eyes is None else round(eyes, 2))
            if image is not None:
                images[index] = image
                valid[index] = not (skip_misses and outcome == "centre")
    images.flush()
    del images
    return valid, outcomes, eye_px
