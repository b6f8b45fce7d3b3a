"""Loader benchmark: the decode-once image store vs decoding the JPEGs every epoch, images/s.

Both sides are the training loader train.py builds (UTKFaceDataModule.train_dataloader with
the cpu trainer preset's batch size and workers) over the same generated UTKFace-size (200 px)
faces; the decode side only swaps in a dataset that reads and decodes every file each time
through the one preprocessing path (decode_rgb -> square_resize), then applies the same
augmentation. Measured for the frozen phase's augmentation (flip) and finetune's (flip,
affine, colour jitter).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from agegender.bench.workload import best_of, faces, print_result, timed
from agegender.configs import compose_config
from agegender.data.augment import build_augmentation
from agegender.data.cache import decode_for_store
from agegender.data.datamodule import UTKFaceDataModule

COUNT, QUICK_COUNT = 640, 48
IMAGE_SIZE = 128


class DecodingDataset(Dataset):
    """The store's samples, decoded from their JPEG files on every access."""

    def __init__(
        self,
        files: list[Path],
        ages: np.ndarray,
        genders: np.ndarray,
        image_size: int,
        transform: v2.Transform | None,
    ) -> None:
        self.files = files
        self.ages = ages.astype(np.float32)
        self.genders = genders.astype(np.float32)
        self.image_size = image_size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = torch.from_numpy(
            np.ascontiguousarray(decode_for_store(self.files[index], self.image_size)[0])
        )
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "age": torch.tensor(self.ages[index]),
            "gender": torch.tensor(self.genders[index]),
        }


def loaders(root: Path, cache_dir: Path, phase: str) -> dict[str, DataLoader]:
    """The training loader train.py builds from the image store, and its decoding twin.

    Flip-only batches from the store load in the main process under the cpu preset; for
    comparison with the same settings as the decoding side, they are also measured through
    the preset's workers.
    """
    cfg = compose_config(
        "train",
        f"phase={phase}",
        f"data.root={root}",
        f"data.cache_dir={cache_dir}",
        f"data.image_size={IMAGE_SIZE}",
    )
    datamodule = UTKFaceDataModule.from_config(OmegaConf.to_container(cfg.data, resolve=True))
    datamodule.prepare_data()
    datamodule.setup("fit")
    found = {"image store": datamodule.train_dataloader()}
    workers = int(cfg.data.num_workers)
    if found["image store"].num_workers != workers:
        datamodule.config["workers_for_flip_only"] = True
        found[f"image store, {workers} workers"] = datamodule.train_dataloader()
    samples = datamodule.samples_of("train")
    datamodule.datasets["train"] = DecodingDataset(
        [datamodule.data.root / s.relpath for s in samples],
        np.array([s.age for s in samples]),
        np.array([s.gender for s in samples]),
        IMAGE_SIZE,
        build_augmentation(datamodule.config.get("augment")),
    )
    found["decode every epoch"] = datamodule.train_dataloader()
    return found


def epoch_seconds(loader: DataLoader) -> float:
    return timed(lambda: [None for _ in loader])


def describe(loader: DataLoader) -> str:
    return f"{loader.num_workers} workers" if loader.num_workers else "main process"


def run(quick: bool = False) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="agegender-bench-data-") as folder:
        root = faces(Path(folder), QUICK_COUNT if quick else COUNT)
        for phase, augmentation in (("frozen", "flip"), ("finetune", "flip+affine+jitter")):
            found = loaders(root, Path(folder) / "cache", phase)
            for loader in found.values():
                epoch_seconds(loader)  # warm-up: worker start, page cache
            measures = {name: lambda lo=lo: epoch_seconds(lo) for name, lo in found.items()}
            best = best_of(rounds, measures)
            for source, seconds in best.items():
                images = len(found[source].dataset)
                rows.append(
                    {
                        "augmentation": augmentation,
                        "source": source,
                        "loading": describe(found[source]),
                        "epoch_s": seconds,
                        "images_per_s": images / seconds,
                    }
                )
                if source != "decode every epoch":
                    label = f"{source} / decode, {augmentation}"
                    ratios[label] = best["decode every epoch"] / seconds
            batch_size = found["image store"].batch_size
    result = {
        "entry": "data",
        "rows": rows,
        "ratios": ratios,
        "notes": (
            f"training loader as train.py builds it (cpu preset), {images} images at "
            f"{IMAGE_SIZE} px from 200 px JPEGs, batch {batch_size}; best of {rounds} "
            f"epochs each, alternating"
        ),
    }
    print_result(
        "data: training-loader throughput",
        result,
        [
            ("augmentation", "augmentation"),
            ("source", "source"),
            ("loading", "loading"),
            ("epoch_s", "epoch s"),
            ("images_per_s", "images/s"),
        ],
    )
    return result


if __name__ == "__main__":
    run()
