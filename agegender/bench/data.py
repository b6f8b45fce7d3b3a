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

from agegender.bench.workload import best_of, faces, print_result, timed, train_config
from agegender.data.datamodule import UTKFaceDataModule, build_augmentation
from agegender.preprocess import decode_rgb, square_resize

COUNT, QUICK_COUNT = 640, 96
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
        rgb = decode_rgb(self.files[index].read_bytes())
        pixels = square_resize(rgb, self.image_size).transpose(2, 0, 1)
        image = torch.from_numpy(np.ascontiguousarray(pixels))
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "age": torch.tensor(self.ages[index]),
            "gender": torch.tensor(self.genders[index]),
        }


def loaders(root: Path, cache_dir: Path, phase: str) -> dict[str, DataLoader]:
    """The training loader from the image store and its decode-every-epoch twin."""
    cfg = train_config(
        f"phase={phase}",
        f"data.root={root}",
        f"data.cache_dir={cache_dir}",
        f"data.image_size={IMAGE_SIZE}",
    )
    datamodule = UTKFaceDataModule(OmegaConf.to_container(cfg.data, resolve=True))
    datamodule.prepare_data()
    datamodule.setup("fit")
    cached = datamodule.train_dataloader()
    samples = datamodule.samples_of("train")
    datamodule.datasets["train"] = DecodingDataset(
        [datamodule.data.root / s.relpath for s in samples],
        np.array([s.age for s in samples]),
        np.array([s.gender for s in samples]),
        IMAGE_SIZE,
        build_augmentation(datamodule.config.get("augment")),
    )
    return {"image store": cached, "decode every epoch": datamodule.train_dataloader()}


def epoch_seconds(loader: DataLoader) -> float:
    return timed(lambda: [None for _ in loader])


def run(quick: bool = False) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="agegender-bench-data-") as folder:
        root = faces(Path(folder), QUICK_COUNT if quick else COUNT)
        for phase, augmentation in (("frozen", "flip"), ("finetune", "flip+affine+jitter")):
            pair = loaders(root, Path(folder) / "cache", phase)
            images = len(pair["image store"].dataset)
            for loader in pair.values():
                epoch_seconds(loader)  # warm-up: worker start, page cache
            measures = {name: lambda lo=lo: epoch_seconds(lo) for name, lo in pair.items()}
            best = best_of(1 if quick else 3, measures)
            for source, seconds in best.items():
                rows.append(
                    {
                        "augmentation": augmentation,
                        "source": source,
                        "images": images,
                        "epoch_s": seconds,
                        "images_per_s": images / seconds,
                    }
                )
            ratios[f"image store / decode, {augmentation}"] = (
                best["decode every epoch"] / best["image store"]
            )
            workers = pair["image store"].num_workers
    result = {
        "entry": "data",
        "rows": rows,
        "ratios": ratios,
        "notes": (
            f"training loader, {IMAGE_SIZE} px from 200 px JPEGs, batch "
            f"{pair['image store'].batch_size}, {workers} workers (cpu preset); best of "
            f"{1 if quick else 3} epochs each, alternating"
        ),
    }
    print_result(
        "data: training-loader throughput",
        result,
        [
            ("augmentation", "augmentation"),
            ("source", "source"),
            ("images", "images"),
            ("epoch_s", "epoch s"),
            ("images_per_s", "images/s"),
        ],
    )
    return result


if __name__ == "__main__":
    run()
