"""One training phase, from a composed Hydra config to checkpoints, plots and metrics.json."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
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
    net_config,
)
from agegender.data.datamodule import UTKFaceDataModule
from agegender.data.feature_cache import FeatureCache
from agegender.errors import UserError
from agegender.faces.photo import PhotoCrop
from agegender.io import write_atomic
from agegender.model import NetConfig
from agegender.module import AgeGenderModule
from agegender.resume import LAST, METRICS, RUNNING, ResumeError

log = logging.getLogger(__name__)

PHASES = ("frozen", "finetune")


def _container(config: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


def find_init_checkpoint(cfg: DictConfig) -> LoadedCheckpoint:
    """The checkpoint a phase starts from: init_from, else (finetune) the newest best.ckpt of
    a finished run in outputs_dir/frozen/ (not elsewhere under outputs_dir: a demo's or
    another data set's frozen run would not fit this run's data)."""
    if cfg.init_from:
        log.info("starting from init_from=%s", cfg.init_from)
        return load_checkpoint(cfg.init_from)
    found = find_latest_best(cfg.outputs_dir, "frozen", anywhere=False)
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
        net = net_config(start.meta)  # the architecture comes with the weights
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


def trainer_flags(cfg: DictConfig) -> dict[str, Any]:
    """cfg.trainer, refusing keys that lightning.Trainer does not take (one line, not a
    TypeError traceback)."""
    flags = _container(cfg.trainer)
    known = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(flags) - known)
    if "resume_from_checkpoint" in unknown:
        raise UserError(
            "trainer.resume_from_checkpoint is not a Lightning 2 Trainer flag; continue a "
            "killed run with python train.py resume=RUN_DIR"
        )
    if unknown:
        raise UserError(
            f"trainer.{unknown[0]}={flags[unknown[0]]}: not a lightning.Trainer flag; see "
            f"https://lightning.ai/docs/pytorch/stable/common/trainer.html for the flags"
        )
    return flags


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """RUN_DIR/checkpoints/last.ckpt for resume=RUN_DIR (train.py makes RUN_DIR the run folder)."""
    if not cfg.get("resume"):
        return None
    resume_dir = Path(str(cfg.resume)).expanduser()
    if resume_dir.resolve() != run_dir.resolve():
        raise ResumeError(
            f"resume={resume_dir}: the run folder is {run_dir}; start it through "
            f"python train.py resume=RUN_DIR"
        )
    last = run_dir / LAST
    if not last.is_file():
        raise ResumeError(f"resume={resume_dir}: no {LAST} to continue from")
    return last


def finite(value: Any) -> Any:
    """NaN and infinities (an empty split's metrics) as None, so metrics.json is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def run_phase(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit one phase, test its best checkpoint, and write metrics.json into run_dir.

    The run folder holds a RUNNING marker until metrics.json is written; resume=RUN_DIR
    continues a killed run from its last.ckpt.
    """
    L.seed_everything(int(cfg.seed), workers=True)
    # A backbone without ImageNet weights drives activations into denormal floats, which x86
    # CPUs compute many times slower; flushing them to zero changes nothing measurable
    # (measured: frozen-phase feature pass 83 -> 209 images/s at 64 px).
    torch.set_flush_denormal(True)
    if cfg.phase.name not in PHASES:
        raise UserError(f"phase={cfg.phase.name}: choose phase=frozen or phase=finetune")
    flags = trainer_flags(cfg)
    resume_from = resume_checkpoint(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:
        # The architecture comes from the run itself; Lightning restores everything else.
        start: LoadedCheckpoint | None = load_checkpoint(resume_from)
        log.info("resuming %s from %s", run_dir, resume_from)
    elif cfg.phase.name == "finetune" or cfg.init_from:
        start = find_init_checkpoint(cfg)
    else:
        start = None
    module = build_module(cfg, run_dir, start)
    apply_speed_options(module, cfg.model)
    data_cfg = _container(cfg.data)
    inherited = start.meta.get("split_file") if start is not None else None
    if resume_from is not None and (run_dir / "split.json").is_file():
        data_cfg["split_file"] = str(run_dir / "split.json")  # the run's own split, exactly
    elif inherited and not data_cfg.get("split_file") and Path(inherited).is_file():
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
        **flags,
        default_root_dir=run_dir,
        logger=logger,
        callbacks=build_callbacks(cfg, run_dir),
    )
    if trainer.is_global_zero:
        write_atomic(run_dir / RUNNING, f"pid {os.getpid()}\n")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
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
        if not datamodule.samples_of("test"):
            log.warning("the test split is empty (too few images): no test metrics")
            summary["test"] = None
        else:
            results = trainer.test(
                module, datamodule=datamodule, ckpt_path=str(best), verbose=False
            )
            summary["test"] = {k: float(v) for k, v in results[0].items()} if results else {}
    summary = finite(summary)
    if trainer.is_global_zero:
        write_atomic(run_dir / METRICS, json.dumps(summary, indent=2, allow_nan=False))
        (run_dir / RUNNING).unlink(missing_ok=True)  # finished: ckpt=latest may take it
    return summary
