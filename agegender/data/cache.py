"""Decode-once image store: every image decoded and resized once into a memory-mapped array.

The store is keyed by the content digests of the file list and the image size, so it is
rebuilt exactly when either changes. It is written under a temporary name and renamed into
place only when complete; the metadata file is renamed last and is what marks a store as
usable, so an interrupted build is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import track

from agegender.data.utkface import Sample
from agegender.io import remove_stale_temps
from agegender.preprocess import ImageDecodeError, decode_rgb, square_resize

log = logging.getLogger(__name__)

STORE_VERSION = 1  # bump when the preprocessing changes what a stored image looks like


def store_key(samples: Sequence[Sample], image_size: int) -> str:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"v{STORE_VERSION}:{image_size}:".encode())
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

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])


def _paths(key: str, cache_dir: Path) -> tuple[Path, Path]:
    return cache_dir / f"images-{key}.npy", cache_dir / f"images-{key}.json"


def open_store(path: Path) -> np.ndarray:
    """Open a store's image array read-only (each DataLoader worker opens its own map)."""
    return np.load(path, mmap_mode="r")


def decode_for_store(file: Path, image_size: int) -> np.ndarray | None:
    """One image file as the store holds it (uint8 [3, S, S] RGB), or None if undecodable."""
    try:
        rgb = decode_rgb(file.read_bytes())
    except (ImageDecodeError, OSError):
        return None
    return square_resize(rgb, image_size).transpose(2, 0, 1)


def open_or_build(
    root: Path,
    samples: Sequence[Sample],
    image_size: int,
    cache_dir: str | Path,
    progress: bool = True,
    workers: int | None = None,
) -> ImageStore:
    """Reuse the store for these samples and size, or decode every image once to build it."""
    cache_dir = Path(cache_dir)
    key = store_key(samples, image_size)
    array_path, meta_path = _paths(key, cache_dir)
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        images = open_store(array_path)
        if images.shape == (len(samples), 3, image_size, image_size):
            return ImageStore(array_path, images, np.array(meta["valid"], dtype=bool), 0)
        log.warning("image store %s has an unexpected shape; rebuilding it", array_path)

    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(cache_dir, "images-*.tmp-*"):  # a killed build's leftovers
        log.info("removed %s, left by a build that was killed", stale.name)
    suffix = f".tmp-{os.getpid()}"
    array_tmp = array_path.with_name(array_path.name + suffix)
    shape = (len(samples), 3, image_size, image_size)
    images = np.lib.format.open_memmap(array_tmp, mode="w+", dtype=np.uint8, shape=shape)
    valid = np.zeros(len(samples), dtype=bool)
    files = [root / sample.relpath for sample in samples]
    # OpenCV releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        decoded = pool.map(lambda file: decode_for_store(file, image_size), files, chunksize=32)
        steps = track(
            decoded,
            total=len(files),
            description=f"Decoding {len(files)} images to {image_size}px (once)",
            disable=not progress,
        )
        for index, image in enumerate(steps):
            if image is not None:
                images[index] = image
                valid[index] = True
    images.flush()
    del images
    os.replace(array_tmp, array_path)
    meta_tmp = meta_path.with_name(meta_path.name + suffix)
    meta_tmp.write_text(
        json.dumps({"version": STORE_VERSION, "image_size": image_size, "valid": valid.tolist()})
    )
    os.replace(meta_tmp, meta_path)  # last: its presence marks the store complete
    return ImageStore(array_path, open_store(array_path), valid, len(samples))
