"""Frozen-phase benchmark: heads trained on cached backbone features vs the full pass.

Both sides run the real phase=frozen configuration (flip-only augmentation, the cpu trainer
preset, model defaults) through a Lightning Trainer as train.py builds it, without
checkpoints or logs, on the same generated faces. An epoch is training plus validation. The
cache side's one-time build (plain and flipped features of every image) is timed on its own,
and the totals of a whole 15-epoch phase are given, build included.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from agegender.bench.workload import (
    THREADS,
    faces,
    print_result,
    quiet_lightning,
    timed,
    torch_threads,
)
from agegender.configs import compose_config
from agegender.data.datamodule import UTKFaceDataModule
from agegender.data.features import open_or_build_features
from agegender.scenes import calibrate_batchnorm
from agegender.training import apply_speed_options, build_module, trainer_flags

COUNT, QUICK_COUNT = 640, 48
IMAGE_SIZE, QUICK_IMAGE_SIZE = 128, 32
PHASE_EPOCHS = 15  # phase=frozen's max_epochs


class EpochTimer(L.Callback):
    """Wall time of each training epoch, its validation included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def fit_epochs(cfg: DictConfig, run_dir: Path, cached: bool, epochs: int) -> dict[str, Any]:
    """Fit `epochs` epochs; returns epoch times and, when cached, the feature build time."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = build_module(cfg, run_dir, None)
    apply_speed_options(module, cfg.model)
    datamodule = UTKFaceDataModule.from_config(OmegaConf.to_container(cfg.data, resolve=True))
    datamodule.prepare_data()
    datamodule.setup("fit")
    calibrate_batchnorm(module.net, torch.from_numpy(np.array(datamodule.data.store.images[:32])))
    build_seconds = None
    if cached:  # built here to time it; the callback below then finds it complete
        build_seconds = timed(
            lambda: open_or_build_features(
                module.net,
                datamodule.data.store,
                cfg.data.cache_dir,
                flip=bool(cfg.data.augment.hflip),
                batch_size=int(cfg.data.batch_size),
                channels_last=bool(cfg.model.channels_last),
                progress=False,
            )
        )
    timer = EpochTimer()
    trainer_cfg = {
        **trainer_flags(cfg),
        "max_epochs": epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    datamodule.config["feature_cache"] = cached
    trainer = L.Trainer(**trainer_cfg, callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    if cached and not datamodule.embeddings:
        raise RuntimeError("the feature cache was not used")
    return {
        "epoch_s": min(timer.seconds[1:]),  # the first epoch pays start-up costs
        "build_s": build_seconds,
        "train_images": len(datamodule.datasets["train"]),
    }


def run(quick: bool = False) -> dict[str, Any]:
    size = QUICK_IMAGE_SIZE if quick else IMAGE_SIZE
    with tempfile.TemporaryDirectory(prefix="agegender-bench-frozen-") as folder:
        root = faces(Path(folder), QUICK_COUNT if quick else COUNT)
        cfg = compose_config(
            "train",
            "phase=frozen",
            f"data.root={root}",
            f"data.cache_dir={Path(folder) / 'cache'}",
            f"data.image_size={size}",
            "model.pretrained=none",  # speed does not depend on the weights; no download
        )
        with quiet_lightning(), torch_threads(THREADS):
            full = fit_epochs(cfg, Path(folder) / "full", cached=False, epochs=3)
            cached = fit_epochs(cfg, Path(folder) / "cached", cached=True, epochs=4)
    rows = [
        {
            "path": "full pass (backbone every epoch)",
            "epoch_s": full["epoch_s"],
            "build_s": 0.0,
            "phase_s": PHASE_EPOCHS * full["epoch_s"],
        },
        {
            "path": "feature cache (heads only)",
            "epoch_s": cached["epoch_s"],
            "build_s": cached["build_s"],
            "phase_s": cached["build_s"] + PHASE_EPOCHS * cached["epoch_s"],
        },
    ]
    result = {
        "entry": "frozen",
        "rows": rows,
        "ratios": {
            "frozen epoch, cache / full pass": full["epoch_s"] / cached["epoch_s"],
            f"{PHASE_EPOCHS}-epoch frozen phase incl. build": rows[0]["phase_s"]
            / rows[1]["phase_s"],
        },
        "notes": (
            f"phase=frozen, {full['train_images']} training images at {size} px, batch "
            f"{cfg.data.batch_size}, channels_last={cfg.model.channels_last}, "
            f"{cfg.trainer.precision}, {THREADS} intra-op thread(s), "
            f"{cfg.data.num_workers} loader workers; epoch = train + val, best epoch after "
            f"the first; build = plain + flipped features of every image"
        ),
    }
    print_result(
        "frozen: frozen-phase epoch",
        result,
        [
            ("path", "path"),
            ("epoch_s", "epoch s"),
            ("build_s", "build s"),
            ("phase_s", f"{PHASE_EPOCHS} epochs s"),
        ],
    )
    return result


if __name__ == "__main__":
    run()
