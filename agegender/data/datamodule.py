"""UTKFaceDataModule: discover -> decode once -> split -> datasets and loaders.

Batches are dicts {"image": uint8 [B,3,S,S] RGB, "age": float [B], "gender": float [B]}.
`prepare_data` (one process per machine under DDP) builds the caches; `setup` (every
process) reopens them, so the cache is built once and never raced.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from agegender.data.augment import build_augmentation
from agegender.data.balance import balanced_sampler
from agegender.data.batched import BatchedMapDataset
from agegender.data.cache import UNREADABLE, ImageStore, open_or_build, open_store
from agegender.data.features import (
    EmbeddingDataset,
    FeatureCacheError,
    FeatureStore,
    backbone_digest,
    only_flip,
    open_or_build_features,
    parse_mode,
    reason_not_cacheable,
)
from agegender.data.split import Split, load_split, make_split, read_split, save_split
from agegender.data.utkface import (
    DOWNLOAD_HELP,
    DatasetError,
    Sample,
    discover,
    summary_lines,
)
from agegender.faces.photo import PhotoCrop

log = logging.getLogger(__name__)


class FaceDataset(BatchedMapDataset):
    """Images from the decode-once store: batches {"image", "age", "gender"}."""

    def __init__(
        self,
        store_path: Path,
        rows: np.ndarray,
        ages: np.ndarray,
        genders: np.ndarray,
        transform: v2.Transform | None = None,
    ) -> None:
        super().__init__()
        self.store_path = store_path
        self.rows = rows
        self.ages = ages.astype(np.float32)
        self.genders = genders.astype(np.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def _open(self) -> np.ndarray:
        return open_store(self.store_path)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        # the augmentation still runs per image, with its own random draw
        index = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(self.maps[self.rows[index]])  # fancy indexing copies
        if self.transform is not None:
            for position in range(len(images)):
                images[position] = self.transform(images[position])
        return {
            "image": images,
            "age": torch.from_numpy(self.ages[index]),
            "gender": torch.from_numpy(self.genders[index]),
        }


@dataclass
class PreparedData:
    root: Path
    samples: list[Sample]  # usable (decodable) samples, in store order
    rows: np.ndarray  # row of each sample in the image store
    store: ImageStore
    skipped: dict[str, int]
    crop: PhotoCrop | None  # the framing the store was built with (data.crop)
    # the last `train_only` samples are faces older than the age range (data.above_range),
    # labelled with its top age: the split puts them in its training part only
    train_only: int = 0

    @property
    def framing(self) -> str:
        """How the store's faces were framed, counted (framing_line)."""
        return framing_line(self.crop, self.store.outcome_counts())

    def framing_of(self, indices: Sequence[int]) -> str:
        """`framing`, counted over these samples only (e.g. the ones a report scores)."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)].tolist()
        return framing_line(self.crop, self.store.outcome_counts(rows))

    @property
    def in_range(self) -> int:
        """How many samples (the first ones) are within the age range."""
        return len(self.samples) - self.train_only


def resolve_root(config: dict[str, Any]) -> Path:
    """The data folder: data.root, or the synthetic set generated into the cache folder."""
    synthetic = config.get("synthetic")
    if config.get("root"):
        return Path(config["root"]).expanduser()
    if synthetic:
        from agegender.data.synthetic import generate_dataset

        folder = Path(config["cache_dir"]) / (
            f"synthetic-n{synthetic['count']}-s{synthetic['seed']}-{synthetic['image_size']}px"
        )
        return generate_dataset(
            folder, synthetic["count"], seed=synthetic["seed"], image_size=synthetic["image_size"]
        )
    raise DatasetError(f"no data folder given. {DOWNLOAD_HELP}")


def prepare(config: dict[str, Any], progress: bool = True) -> PreparedData:
    """Discover, deduplicate and decode-once; corrupt images are dropped and counted."""
    root = resolve_root(config)
    cache_dir = Path(config["cache_dir"])
    root_key = hashlib.blake2b(str(root.resolve()).encode(), digest_size=8).hexdigest()
    discovery = discover(
        root,
        age_range=tuple(config["age_range"]),
        digest_index=cache_dir / f"digests-{root_key}.json",
        above_range=config.get("above_range") or "skip",
    )
    crop = PhotoCrop.from_config(config.get("crop"))
    found = discovery.samples + discovery.above  # the older faces last: see train_only
    store = open_or_build(root, found, int(config["image_size"]), cache_dir, progress, crop=crop)
    skipped = dict(discovery.skipped)
    counts = store.outcome_counts()
    if counts[UNREADABLE]:
        skipped["unreadable or corrupt image"] = counts[UNREADABLE]
    missed = int((~store.valid).sum()) - counts[UNREADABLE]
    if missed:
        skipped["no face found, data.crop.on_miss=skip"] = missed
    rows = np.flatnonzero(store.valid)
    samples = [found[i] for i in rows]
    if not samples:
        raise DatasetError(f"data.root={root}: no image could be decoded. {DOWNLOAD_HELP}")
    train_only = int((rows >= len(discovery.samples)).sum())
    return PreparedData(root, samples, rows, store, skipped, crop, train_only)


def framing_line(crop: PhotoCrop | None, counts: dict[str, int]) -> str:
    """How the stored faces were framed, in words, for the data summary and reports."""
    if crop is None:
        return "faces framed as stored: centre square (data.crop=null)"
    kept = "centre-cropped" if crop.on_miss == "keep" else "skipped"
    return (
        f"faces framed by the face path ({crop.detector}, align={crop.framing.align}, "
        f"margin={crop.framing.margin}): {counts['aligned']} aligned on landmarks, "
        f"{counts['box']} box crops, {counts['centre']} with no face found ({kept})"
    )


class UTKFaceDataModule(L.LightningDataModule):
    """conf/data/*.yaml, built by Hydra (`_target_`): every key is an argument here.

    `feature_cache` chooses the frozen phase's data path: auto (the default) serves pooled
    backbone features computed once per image (and flipped image) instead of images whenever
    the trainer's model has its whole backbone frozen and flip is the only augmentation;
    true insists (an error otherwise); false always serves images.
    """

    def __init__(
        self,
        root: str | None = None,
        cache_dir: str = ".cache/agegender",
        image_size: int = 128,
        age_range: Sequence[int] = (1, 80),
        above_range: str = "skip",
        crop: dict[str, Any] | None = None,
        split: dict[str, Any] | None = None,
        split_file: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        workers_for_flip_only: bool = True,
        augment: dict[str, Any] | None = None,
        age_balance: dict[str, Any] | None = None,
        feature_cache: str | bool = "auto",
        synthetic: dict[str, Any] | None = None,
        split_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        # One dict, as prepare() and the reports take it (plain types: it is also logged).
        self.config: dict[str, Any] = {
            "root": root,
            "cache_dir": str(cache_dir),
            "image_size": int(image_size),
            "age_range": list(age_range),
            "above_range": above_range,
            "crop": crop,
            "split": split or {},
            "split_file": split_file,
            "batch_size": int(batch_size),
            "num_workers": int(num_workers),
            "pin_memory": bool(pin_memory),
            "persistent_workers": bool(persistent_workers),
            "workers_for_flip_only": bool(workers_for_flip_only),
            "augment": augment,
            "age_balance": age_balance,
            "feature_cache": parse_mode(feature_cache),
            "synthetic": synthetic,
        }
        self.split_dir = Path(split_dir) if split_dir else None
        self.data: PreparedData | None = None
        self.split: Split | None = None
        self.split_path: Path | None = None
        self.datasets: dict[str, FaceDataset] = {}
        # Served instead of images when the frozen phase uses the feature cache; `datasets`
        # keep the images (prediction grids, evaluation).
        self.embeddings: dict[str, EmbeddingDataset] = {}
        self.features: FeatureStore | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], split_dir: str | Path | None = None
    ) -> UTKFaceDataModule:
        """From a data config as a plain dict (keys this class does not take are left out)."""
        names = set(inspect.signature(cls.__init__).parameters) - {"self", "split_dir"}
        return cls(**{k: v for k, v in config.items() if k in names}, split_dir=split_dir)

    def prepare_data(self) -> None:
        prepare(self.config)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self._open_data()
        if stage in ("fit", "validate", "test") and self.trainer is not None:
            self._use_cached_features()

    def _open_data(self) -> None:
        """Reopen the image store, make or load the split (saved beside the run), datasets."""
        split_file = self.config.get("split_file")
        saved = read_split(split_file) if split_file else None
        if saved is not None:
            # a saved split names its own faces: older ones too when it was made with them
            self.config["above_range"] = saved.above_range
        self.data = prepare(self.config, progress=False)
        for line in summary_lines(self.data.root, len(self.data.samples), self.data.skipped):
            log.info(line)
        if self.data.train_only:
            high = self.config["age_range"][1]
            log.info(
                "%d faces older than %d train as %d (data.above_range=train; never in val or test)",
                self.data.train_only,
                high,
                high,
            )
        log.info(self.data.framing)
        split_cfg = self.config.get("split", {})
        if split_file:
            self.split = load_split(Path(split_file), self.data.samples, saved)
            self.split_path = Path(split_file)
        else:
            # the faces within the age range split as they would without the older ones
            self.split = make_split(
                self.data.samples[: self.data.in_range],
                val_fraction=float(split_cfg.get("val", 0.1)),
                test_fraction=float(split_cfg.get("test", 0.1)),
                seed=int(split_cfg.get("seed", 0)),
            )
            self.split.train.extend(range(self.data.in_range, len(self.data.samples)))
        if self.split_dir is not None and self.trainer_is_rank_zero():
            self.split_path = self.split_dir / "split.json"
            info = {
                "root": str(self.data.root),
                "age_range": list(self.config["age_range"]),
                "above_range": self.config["above_range"],
            }
            save_split(self.split_path, self.data.samples, self.split, info)
        augment = build_augmentation(self.config.get("augment"))
        for name in ("train", "val", "test"):
            self.datasets[name] = self.make_dataset(name, augment if name == "train" else None)

    def _use_cached_features(self) -> None:
        """data.feature_cache: serve cached backbone features when the model allows it.

        Called in `setup`, after the image store is open and before the model moves to its
        device or gets wrapped for DDP. Every rank builds; the builder's file lock makes the
        first one compute and the others reuse."""
        mode = self.config["feature_cache"]
        if mode is False or self.features is not None:
            return
        assert self.trainer is not None and self.data is not None
        net = self.trainer.lightning_module.net
        augment = self.config.get("augment")
        reason = reason_not_cacheable(net, augment)
        if reason is not None:
            if mode is True:
                raise FeatureCacheError(
                    f"data.feature_cache=true, but {reason}. Use data.feature_cache=auto to "
                    f"fall back to the full pass, or set data.augment.affine=null "
                    f"data.augment.color_jitter=null"
                )
            log.info("feature cache off: %s, so every batch runs the backbone", reason)
            return
        flip = bool((augment or {}).get("hflip"))
        first = next(net.features.parameters())  # the model's memory format (model.channels_last)
        channels_last = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
        self.features = open_or_build_features(
            net,
            self.data.store,
            self.config["cache_dir"],
            flip=flip,
            device=self.trainer.strategy.root_device,
            batch_size=self.config["batch_size"],
            channels_last=channels_last,
            progress=self.trainer.is_global_zero,
        )
        self.use_features(self.features, random_flip=flip)
        log.info(
            "feature cache on: heads train on cached backbone features (%s; %s)",
            "plain + flipped" if flip else "plain",
            f"computed {self.features.built} now" if self.features.built else "reused",
        )

    def _check_backbone(self) -> None:
        """Cached features are only right for the backbone they came from; a checkpoint
        restored after `setup` (resume, test of the best checkpoint) must still match."""
        if self.features is None or self.trainer is None:
            return
        if backbone_digest(self.trainer.lightning_module.net) != self.features.digest:
            raise FeatureCacheError(
                "the backbone differs from the one the cached features were computed with; "
                "run with data.feature_cache=false or start a new run"
            )

    def trainer_is_rank_zero(self) -> bool:
        return self.trainer is None or self.trainer.is_global_zero

    def samples_of(self, name: str) -> list[Sample]:
        assert self.data is not None and self.split is not None, "call setup() first"
        return [self.data.samples[i] for i in self.split.indices(name)]

    def make_dataset(self, name: str, transform: v2.Transform | None = None) -> FaceDataset:
        assert self.data is not None and self.split is not None, "call setup() first"
        chosen = np.array(self.split.indices(name), dtype=np.int64)
        samples = self.samples_of(name)
        return FaceDataset(
            self.data.store.path,
            self.data.rows[chosen],
            np.array([s.age for s in samples]),
            np.array([s.gender for s in samples]),
            transform,
        )

    def use_features(self, features: FeatureStore, random_flip: bool) -> None:
        """Serve cached backbone features instead of images; val/test use unflipped ones."""
        assert self.data is not None and self.split is not None, "call setup() first"
        for name in ("train", "val", "test"):
            chosen = np.array(self.split.indices(name), dtype=np.int64)
            samples = self.samples_of(name)
            self.embeddings[name] = EmbeddingDataset(
                features,
                self.data.rows[chosen],
                np.array([s.age for s in samples]),
                np.array([s.gender for s in samples]),
                random_flip=random_flip and name == "train",
            )

    @property
    def source_eye_px(self) -> float | None:
        """The training photographs' median eye distance in their own pixels (faces found
        with landmarks), or None when the store does not record it."""
        assert self.data is not None and self.split is not None, "call setup() first"
        eye_px = self.data.store.eye_px
        if not eye_px:
            return None
        rows = self.data.rows[np.array(self.split.indices("train"), dtype=np.int64)]
        found = [eye_px[row] for row in rows if eye_px[row] is not None]
        return round(float(np.median(found)), 1) if found else None

    @property
    def train_mean_age(self) -> float:
        return float(np.mean([s.age for s in self.samples_of("train")]))

    def baseline_mae(self, name: str) -> float:
        """MAE of always predicting the training mean age: the bar a model must clear."""
        ages = np.array([s.age for s in self.samples_of(name)], dtype=np.float64)
        return float(np.abs(ages - self.train_mean_age).mean()) if len(ages) else float("nan")

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        workers = int(self.config.get("num_workers", 0))
        dataset: Dataset = self.datasets[name]
        light = name != "train" or only_flip(self.config.get("augment"))
        if name in self.embeddings:
            self._check_backbone()  # loaders are asked for after checkpoints are restored
            # A batch of features is one gather from a memory map: workers would only add
            # process start-up and inter-process copies.
            dataset, workers = self.embeddings[name], 0
        elif light and isinstance(dataset, FaceDataset):
            # Stored images with at most a flip: one read per batch, which on small CPUs costs
            # less in this process than a worker's inter-process copy (docs/training_at_scale.md).
            workers = workers if self.config.get("workers_for_flip_only", True) else 0
        sampler = None
        if name == "train" and self.config.get("age_balance"):
            ages = [s.age for s in self.samples_of("train")]
            sampler, shuffle = balanced_sampler(ages, self.config["age_balance"]), False
        return DataLoader(
            dataset,
            batch_size=int(self.config["batch_size"]),
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=getattr(dataset, "collate_fn", None),  # batched datasets collate
            pin_memory=bool(self.config.get("pin_memory", False)),
            persistent_workers=workers > 0 and bool(self.config.get("persistent_workers", True)),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
