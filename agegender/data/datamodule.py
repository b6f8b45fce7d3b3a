"""UTKFaceDataModule: discover -> decode once -> split -> datasets and loaders.

Batches are dicts {"image": uint8 [B,3,S,S] RGB, "age": float [B], "gender": float [B]}.
`prepare_data` (one process per machine under DDP) builds the caches; `setup` (every
process) reopens them, so the cache is built once and never raced.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from agegender.data.cache import UNREADABLE, ImageStore, open_or_build, open_store
from agegender.data.features import EmbeddingDataset, FeatureStore
from agegender.data.split import Split, load_split, make_split, save_split
from agegender.data.utkface import (
    DOWNLOAD_HELP,
    DatasetError,
    Sample,
    discover,
    summary_lines,
)
from agegender.faces.photo import PhotoCrop

log = logging.getLogger(__name__)


def build_augmentation(config: dict[str, Any] | None) -> v2.Transform | None:
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


def only_flip(config: dict[str, Any] | None) -> bool:
    """True when horizontal flip is the sole augmentation configured (or none is)."""
    config = config or {}
    return not any(value for key, value in config.items() if key != "hflip")


class FaceDataset(Dataset):
    """Images from the decode-once store; the memory map is opened lazily in each worker."""

    def __init__(
        self,
        store_path: Path,
        rows: np.ndarray,
        ages: np.ndarray,
        genders: np.ndarray,
        transform: v2.Transform | None = None,
    ) -> None:
        self.store_path = store_path
        self.rows = rows
        self.ages = ages.astype(np.float32)
        self.genders = genders.astype(np.float32)
        self.transform = transform
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._images is None:
            self._images = open_store(self.store_path)
        image = torch.from_numpy(np.array(self._images[self.rows[index]]))
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "age": torch.tensor(self.ages[index]),
            "gender": torch.tensor(self.genders[index]),
        }

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch from one read of the memory map (the DataLoader's batched fetch).

        Per-item fetching spends most of its time in Python and in collate's copies, not in
        reading pixels; the augmentation still runs per image, with its own random draw.
        """
        if self._images is None:
            self._images = open_store(self.store_path)
        index = np.asarray(indices, dtype=np.int64)
        images = torch.from_numpy(self._images[self.rows[index]])  # fancy indexing copies
        if self.transform is not None:
            for position in range(len(images)):
                images[position] = self.transform(images[position])
        return {
            "image": images,
            "age": torch.from_numpy(self.ages[index]),
            "gender": torch.from_numpy(self.genders[index]),
        }

    @staticmethod
    def collate_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch  # __getitems__ already returns a collated batch

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None  # never pickle the map into worker processes
        return state


@dataclass
class PreparedData:
    root: Path
    samples: list[Sample]  # usable (decodable) samples, in store order
    rows: np.ndarray  # row of each sample in the image store
    store: ImageStore
    skipped: dict[str, int]
    framing: str  # how the faces were framed, counted (framing_line)


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
    )
    crop = PhotoCrop.from_config(config.get("crop"))
    store = open_or_build(
        root, discovery.samples, int(config["image_size"]), cache_dir, progress, crop=crop
    )
    skipped = dict(discovery.skipped)
    counts = store.outcome_counts()
    if counts[UNREADABLE]:
        skipped["unreadable or corrupt image"] = counts[UNREADABLE]
    missed = int((~store.valid).sum()) - counts[UNREADABLE]
    if missed:
        skipped["no face found, data.crop.on_miss=skip"] = missed
    rows = np.flatnonzero(store.valid)
    samples = [discovery.samples[i] for i in rows]
    if not samples:
        raise DatasetError(f"data.root={root}: no image could be decoded. {DOWNLOAD_HELP}")
    return PreparedData(root, samples, rows, store, skipped, framing_line(crop, counts))


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
    def __init__(self, config: dict[str, Any], split_dir: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.split_dir = Path(split_dir) if split_dir else None
        self.data: PreparedData | None = None
        self.split: Split | None = None
        self.split_path: Path | None = None
        self.datasets: dict[str, FaceDataset] = {}
        # Served instead of images when the frozen phase uses the feature cache; `datasets`
        # keep the images (prediction grids, evaluation).
        self.embeddings: dict[str, EmbeddingDataset] = {}

    def prepare_data(self) -> None:
        prepare(self.config)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = prepare(self.config, progress=False)
        for line in summary_lines(self.data.root, len(self.data.samples), self.data.skipped):
            log.info(line)
        log.info(self.data.framing)
        split_file = self.config.get("split_file")
        split_cfg = self.config.get("split", {})
        if split_file:
            self.split = load_split(Path(split_file), self.data.samples)
            self.split_path = Path(split_file)
        else:
            self.split = make_split(
                self.data.samples,
                val_fraction=float(split_cfg.get("val", 0.1)),
                test_fraction=float(split_cfg.get("test", 0.1)),
                seed=int(split_cfg.get("seed", 0)),
            )
        if self.split_dir is not None and self.trainer_is_rank_zero():
            self.split_path = self.split_dir / "split.json"
            info = {"root": str(self.data.root), "age_range": list(self.config["age_range"])}
            save_split(self.split_path, self.data.samples, self.split, info)
        augment = build_augmentation(self.config.get("augment"))
        for name in ("train", "val", "test"):
            self.datasets[name] = self.make_dataset(name, augment if name == "train" else None)

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
            # A batch of features is one gather from a memory map: workers would only add
            # process start-up and inter-process copies.
            dataset, workers = self.embeddings[name], 0
        elif light and isinstance(dataset, FaceDataset):
            # Stored images with at most a flip: one read per batch (~2 ms for 128 images),
            # cheaper in this process than a worker's inter-process copy (~5 ms, measured).
            workers = workers if self.config.get("workers_when_light", True) else 0
        return DataLoader(
            dataset,
            batch_size=int(self.config["batch_size"]),
            shuffle=shuffle,
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
