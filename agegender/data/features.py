"""Frozen-phase feature cache: pooled backbone features computed once per image, memory-mapped.

With the whole backbone frozen (BatchNorm in eval mode) the pooled 1280-d features of an image
never change, so the frozen phase need not run the backbone 15 epochs in a row: it computes
them once per image (and once per flipped image when a horizontal flip is the only
augmentation) and trains the neck and heads on them.

The cache is keyed by the image store (file contents and image size), a digest of the backbone
weights and BatchNorm buffers, and the image size, so it is rebuilt exactly when any of them
changes. Each view is written under a temporary name and renamed into place; its metadata file
is renamed last and marks it complete, so a half-written cache is never read. A file lock lets
concurrent processes (DDP ranks, parallel sweep jobs) build it once and share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from rich.progress import track

from agegender.data.batched import BatchedMapDataset
from agegender.data.cache import ImageStore
from agegender.errors import UserError
from agegender.io import atomic_target, remove_stale_temps, write_atomic
from agegender.model import AgeGenderNet

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when the way features are computed changes
VIEWS = ("plain", "flip")  # flip = the horizontally flipped image


def backbone_digest(net: AgeGenderNet) -> str:
    """Digest of everything `net.embed` depends on: weights, BatchNorm buffers, normalisation."""
    state = {f"features.{k}": v for k, v in net.features.state_dict().items()}
    state["pixel_mean"], state["pixel_std"] = net.pixel_mean, net.pixel_std
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"v{FEATURES_VERSION}:{net.config.backbone}".encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def feature_key(store: ImageStore, digest: str) -> str:
    """Cache key: the image store (its name carries the content key), backbone and size."""
    text = f"v{FEATURES_VERSION}:{store.path.name}:{digest}:{store.image_size}"
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


class FeatureCacheError(UserError):
    """data.feature_cache=true, but this run cannot use cached features."""


def parse_mode(value: Any) -> str | bool:
    """data.feature_cache as auto, True or False (YAML may give 'true' as a string)."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if value == "auto" or isinstance(value, bool):
        return value
    raise UserError(f"data.feature_cache must be auto, true or false, got {value!r}")


def only_flip(augment: dict[str, Any] | None) -> bool:
    """True when horizontal flip is the sole augmentation configured (or none is)."""
    return not any(value for key, value in (augment or {}).items() if key != "hflip")


def reason_not_cacheable(net: AgeGenderNet, augment: dict[str, Any] | None) -> str | None:
    """Why backbone features cannot be cached for this run, or None when they can."""
    if not net.backbone_frozen:
        return f"the backbone trains from features[{net.frozen_blocks}] on"
    if not only_flip(augment):
        parts = [name for name, value in (augment or {}).items() if name != "hflip" and value]
        return f"augmentation other than flip is configured (data.augment: {', '.join(parts)})"
    return None


@dataclass
class FeatureStore:
    """float32 features [N, D] in image-store row order, memory-mapped, one file per view."""

    paths: dict[str, Path]  # view -> .npy path
    digest: str  # backbone_digest of the net they were computed with
    built: int  # images run through the backbone by this call: 0 when reused

    @property
    def has_flip(self) -> bool:
        return "flip" in self.paths


def _paths(cache_dir: Path, key: str, view: str) -> tuple[Path, Path]:
    stem = f"features-{key}-{view}"
    return cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"


def _open_complete(array_path: Path, meta_path: Path, shape: tuple[int, int]) -> bool:
    """True when this view exists, is complete (metadata present) and has the right shape."""
    if not (array_path.is_file() and meta_path.is_file()):
        return False
    try:
        array = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == shape and array.dtype == np.float32


@torch.inference_mode()
def compute_features(
    net: AgeGenderNet,
    images: np.ndarray,
    out: np.ndarray,
    flip: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    channels_last: bool = False,
    progress: bool = False,
) -> None:
    """Run the backbone (eval mode, fp32) over uint8 images [N,3,S,S] into out [N, D]."""
    # A fresh copy: the training module stays untouched (mode, device, compiled forward).
    with torch.random.fork_rng(devices=[]):  # building it must not move training's RNG
        embedder = AgeGenderNet(net.config)
    embedder.load_state_dict(net.state_dict())
    embedder = embedder.eval().to(device)
    if net.frozen_runner is not None:
        # the whole backbone is frozen here: all of it runs where the net runs its frozen blocks
        embedder.freeze_blocks(None)
        embedder.run_frozen_blocks_on("onnxruntime")
    if channels_last:
        embedder = embedder.to(memory_format=torch.channels_last)
    starts = range(0, len(images), batch_size)
    label = f"Computing {'flipped ' if flip else ''}backbone features of {len(images)} images"
    for start in track(starts, description=label, disable=not progress):
        batch = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
        if flip:
            batch = batch.flip(-1)  # what RandomHorizontalFlip does to a [3,H,W] image
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        out[start : start + len(batch)] = embedder.embed(batch).float().cpu().numpy()


def open_or_build_features(
    net: AgeGenderNet,
    store: ImageStore,
    cache_dir: str | Path,
    flip: bool,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    channels_last: bool = False,
    progress: bool = True,
) -> FeatureStore:
    """Reuse the cached features of this store and backbone, or compute the missing views."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = backbone_digest(net)
    key = feature_key(store, digest)
    shape = (len(store.images), net.feature_dim)
    views = VIEWS if flip else VIEWS[:1]
    paths: dict[str, Path] = {}
    built = 0
    # One builder at a time; a process that waited finds the views complete and reuses them.
    with FileLock(str(cache_dir / f"features-{key}.lock")):
        for stale in remove_stale_temps(cache_dir, "*features-*.tmp-*"):
            log.info("removed %s, left by a build that was killed", stale.name)
        for view in views:
            array_path, meta_path = _paths(cache_dir, key, view)
            paths[view] = array_path
            if _open_complete(array_path, meta_path, shape):
                continue
            with atomic_target(array_path) as array_tmp:
                out = np.lib.format.open_memmap(array_tmp, mode="w+", dtype=np.float32, shape=shape)
                compute_features(
                    net,
                    store.images,
                    out,
                    view == "flip",
                    device,
                    batch_size,
                    channels_last,
                    progress,
                )
                out.flush()
                del out
            meta = {
                "version": FEATURES_VERSION,
                "view": view,
                "backbone_digest": digest,
                "image_store": store.path.name,
                "image_size": store.image_size,
                "shape": list(shape),
            }
            write_atomic(meta_path, json.dumps(meta))  # last: it marks the view complete
            built += shape[0]
    return FeatureStore(paths, digest, built)


class EmbeddingDataset(BatchedMapDataset):
    """One split's cached features: batches {"embedding", "age", "gender"}.

    With `random_flip`, each sample takes its flipped or plain features at random, drawn anew
    every epoch (what RandomHorizontalFlip(p=0.5) does to the image).
    """

    def __init__(
        self,
        features: FeatureStore,
        rows: np.ndarray,
        ages: np.ndarray,
        genders: np.ndarray,
        random_flip: bool = False,
    ) -> None:
        if random_flip and not features.has_flip:
            raise ValueError("random_flip needs a feature store built with flip=True")
        super().__init__()
        self.paths = dict(features.paths)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.ages = torch.as_tensor(np.asarray(ages, dtype=np.float32))
        self.genders = torch.as_tensor(np.asarray(genders, dtype=np.float32))
        self.random_flip = random_flip

    def __len__(self) -> int:
        return len(self.rows)

    def _open(self) -> dict[str, np.ndarray]:
        return {view: np.load(path, mmap_mode="r") for view, path in self.paths.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        rows = self.rows[index]
        views = self.maps
        embedding = np.array(views["plain"][rows])
        if self.random_flip:
            flipped = (torch.rand(len(rows)) < 0.5).numpy()
            if flipped.any():
                embedding[flipped] = views["flip"][rows[flipped]]
        return {
            "embedding": torch.from_numpy(embedding),
            "age": self.ages[index],
            "gender": self.genders[index],
        }
