"""One training phase, from a composed Hydra config to checkpoints, plots and metrics.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from agegender.callbacks import CurvePlotter, SampleGrid
from agegender.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    build_meta,
    find_latest_best,
    load_checkpoint,
)
from agegender.data.datamodule import UTKFaceDataModule
from agegender.data.feature_cache import FeatureCache
from agegender.errors import UserError
from agegender.faces.photo import PhotoCrop
from agegender.model import NetConfig
from agegender.module import AgeGenderModule

log = logging.getLogger(__name__)

PHASES = ("frozen", "finetune")


def _container(config: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


def find_init_checkpoint(cfg: DictConfig) -> LoadedCheckpoint:
    """The checkpoint finetune starts from: init_from, else the newest frozen best."""
    if cfg.init_from:
        return load_checkpoint(cfg.init_from)
    found = find_latest_best(cfg.outputs_dir, "frozen")
    if found is None:
        raise CheckpointError(
            f"phase=finetune needs a frozen-phase checkpoint, and there is none under "
            f"{cfg.outputs_dir}/frozen/*/checkpoints/best.ckpt. Run `python train.py "
            f"phase=frozen` first (same data.* settings), or pass init_from=PATH"
        )
    log.info("finetune starts from %s", found)
    return load_checkpoint(found)


def _crop_meta(cfg: DictConfig, start: LoadedCheckpoint | None) -> dict[str, Any] | None:
    """The framing this run trains on (data.crop), for live and eval to frame faces alike.

    Finetuning on another framing than the start checkpoint's is allowed but said aloud.
    """
    crop_cfg = cfg.data.get("crop")
    crop = PhotoCrop.from_config(None if crop_cfg is None else _container(crop_cfg))
    meta = None if crop is None else crop.to_meta()
    if start is not None and start.meta.get("crop") != meta:
        log.warning(
            "the start checkpoint was trained on crop=%s, this run uses %s",
            start.meta.get("crop"),
            meta,
        )
    return meta


def build_module(cfg: DictConfig, run_dir: Path, start: LoadedCheckpoint | None) -> AgeGenderModule:
    """The module for this phase, from ImageNet weights or from the `start` checkpoint."""
    phase = cfg.phase.name
    if start is not None:
        net = NetConfig(**start.meta["net"])  # the architecture comes with the weights
        if int(start.meta["image_size"]) != int(cfg.data.image_size):
            log.warning(
                "init checkpoint was trained at %spx, this run uses data.image_size=%s",
                start.meta["image_size"],
                cfg.data.image_size,
            )
    else:
        net = NetConfig(
            cfg.model.backbone,
            int(cfg.model.hidden_units),
            float(cfg.model.dropout),
            str(cfg.model.get("age_head", "regression")),
            tuple(cfg.model.get("age_bins", (0, 100))),
        )
    meta = build_meta(
        net,
        cfg.data.image_size,
        tuple(cfg.data.age_range),
        phase,
        split_file=str(run_dir / "split.json"),
        crop=_crop_meta(cfg, start),
    )
    module = AgeGenderModule(
        net=net.to_dict(),
        meta=meta,
        loss=_container(cfg.loss),
        optim=_container(cfg.optim),
        trainable_from=cfg.phase.trainable_from,
        init_age_bias=start is None,
    )
    if start is None:
        module.net.load_pretrained(cfg.model.pretrained, cfg.model.weights)
    else:
        module.net.load_state_dict(start.net.state_dict())
    return module


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    callbacks_cfg = cfg.callbacks
    callbacks: list[L.Callback] = [
        FeatureCache(
            cfg.data.get("feature_cache", "auto"),
            batch_size=int(cfg.data.batch_size),
            channels_last=bool(cfg.model.get("channels_last", False)),
        ),
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=callbacks_cfg.checkpoint.monitor,
            mode=callbacks_cfg.checkpoint.mode,
            save_last=True,
            auto_insert_metric_name=False,
        ),
        EarlyStopping(
            monitor=callbacks_cfg.early_stopping.monitor,
            mode=callbacks_cfg.early_stopping.mode,
            patience=int(callbacks_cfg.early_stopping.patience),
        ),
    ]
    if callbacks_cfg.plots:
        callbacks.append(CurvePlotter(run_dir / "plots", title=cfg.phase.name))
    if cfg.logger.tensorboard:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        if callbacks_cfg.sample_grid:
            callbacks.append(SampleGrid(int(callbacks_cfg.sample_grid)))
    return callbacks


def apply_speed_options(module: AgeGenderModule, model_cfg: DictConfig) -> None:
    """model.channels_last and model.compile (docs/training_at_scale.md has the numbers)."""
    if model_cfg.get("channels_last"):
        # Weights in NHWC make every convolution (and so its input) channels-last.
        module.net.to(memory_format=torch.channels_last)
    if model_cfg.get("compile"):
        # In place, so parameter names (and checkpoints) stay those of the plain network.
        module.net.compile()


def run_phase(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit one phase, test its best checkpoint, and write metrics.json into run_dir."""
    L.seed_everything(int(cfg.seed), workers=True)
    # A backbone without ImageNet weights drives activations into denormal floats, which x86
    # CPUs compute many times slower; flushing them to zero changes nothing measurable
    # (measured: frozen-phase feature pass 83 -> 209 images/s at 64 px).
    torch.set_flush_denormal(True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.phase.name not in PHASES:
        raise UserError(f"phase={cfg.phase.name}: choose phase=frozen or phase=finetune")
    start = find_init_checkpoint(cfg) if cfg.phase.name == "finetune" else None
    module = build_module(cfg, run_dir, start)
    apply_speed_options(module, cfg.model)
    data_cfg = _container(cfg.data)
    inherited = start.meta.get("split_file") if start is not None else None
    if inherited and not data_cfg.get("split_file") and Path(inherited).is_file():
        # Keep the frozen phase's test set exactly: reuse its saved split.
        data_cfg["split_file"] = inherited
        log.info("using the split of the start checkpoint: %s", inherited)
    datamodule = UTKFaceDataModule(data_cfg, split_dir=run_dir)
    logger = (
        TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False)
        if cfg.logger.tensorboard
        else False
    )
    trainer = L.Trainer(
        **_container(cfg.trainer),
        default_root_dir=run_dir,
        logger=logger,
        callbacks=build_callbacks(cfg, run_dir),
    )
    trainer.fit(module, datamodule=datamodule)
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else None
    summary: dict[str, Any] = {
        "phase": cfg.phase.name,
        "run_dir": str(run_dir),
        "best_checkpoint": str(best) if best else None,
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "best_val_age_mae": float(checkpoint.best_model_score)
        if checkpoint and checkpoint.best_model_score is not None
        else None,
        "epochs_run": trainer.current_epoch,
        "split_file": str(datamodule.split_path) if datamodule.split_path else None,
        "train_mean_age": datamodule.train_mean_age,
        "baseline_test_age_mae": datamodule.baseline_mae("test"),
    }
    if cfg.test_after_fit and best is not None:
        results = trainer.test(module, datamodule=datamodule, ckpt_path=str(best), verbose=False)
        summary["test"] = {k: float(v) for k, v in results[0].items()} if results else {}
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary
