"""One training phase, from a composed Hydra config to checkpoints, plots and metrics.json."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from agegender.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    build_meta,
    find_latest_best,
    load_checkpoint,
    net_config,
)
from agegender.data.balance import balance_options
from agegender.data.datamodule import UTKFaceDataModule
from agegender.data.utkface import check_root
from agegender.errors import UserError
from agegender.faces.photo import PhotoCrop
from agegender.io import write_atomic
from agegender.model import AgeGenderNet
from agegender.module import AgeGenderModule
from agegender.resume import LAST, METRICS, RUNNING, ResumeError

log = logging.getLogger(__name__)

PHASES = ("frozen", "finetune")

# The backbone blocks below `trainable_from` are kept in eval mode on purpose (their batch-norm
# statistics stay ImageNet's); Lightning warns about every such module at each fit.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# Lightning's own use of a torch API that newer torch deprecates: nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _not_an_advert(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def route_lightning_logs() -> None:
    """Lightning's messages once, through the handlers Hydra set up (console and train.log).

    Lightning gives its "lightning" logger a console handler of its own at import, and the
    records also reach the root logger's: every line would print twice. Without root handlers
    (hydra/job_logging=disabled) Lightning's handler stays, so nothing goes silent.
    """
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
    # Lightning's hosted-logger advert on every fit.
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_an_advert not in rank_zero.filters:
        rank_zero.addFilter(_not_an_advert)


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
    if start is None:
        return meta
    # source_eye_px is measured by each run on its own data, not chosen: left out here
    started = {k: v for k, v in (start.meta.get("crop") or {}).items() if k != "source_eye_px"}
    if (started or None) != meta:
        log.warning(
            "the start checkpoint was trained on crop=%s, this run uses %s", started or None, meta
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
        # The module's own network gets the speed options (apply_speed_options).
        fresh: AgeGenderNet = build(
            cfg.model, "model", channels_last=False, compile=False, frozen_runtime="torch"
        )
        net = fresh.config
    meta = build_meta(
        net,
        cfg.data.image_size,
        tuple(cfg.data.age_range),
        phase,
        split_file=str(run_dir / "split.json"),
        crop=_crop_meta(cfg, start),
    )
    # Its random init is replaced below: keep it off the seeded random stream.
    with torch.random.fork_rng(devices=[]):
        module = AgeGenderModule(
            net=net.to_dict(),
            meta=meta,
            loss=_container(cfg.loss),
            optim=_container(cfg.optim),
            trainable_from=cfg.phase.trainable_from,
            init_age_bias=start is None,
        )
    module.net.load_state_dict((fresh if start is None else start.net).state_dict())
    return module


def build(node: DictConfig, name: str, **kwargs: Any) -> Any:
    """Hydra's `instantiate`, with a user error from the built class (or a `_target_` that
    cannot be imported or called) kept as one line rather than a wrapped traceback."""
    try:
        return instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        first = (str(cause or error).strip().splitlines() or [""])[0]
        raise UserError(f"{name}: cannot build {node.get('_target_')} ({first})") from error


def instantiate_group(group: DictConfig | None, name: str) -> list[Any]:
    """Every entry of a `callbacks:` or `logger:` config, built by Hydra from its `_target_`.

    An entry set to null, false or 0 is switched off (`callbacks.plots=false`)."""
    built: list[Any] = []
    for key, entry in (group or {}).items():
        if not entry:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise UserError(
                f"{name}.{key}={entry}: give a mapping with _target_ (see conf/{name}/), or "
                f"null to switch it off"
            )
        built.append(build(entry, f"{name}.{key}"))
    return built


def apply_speed_options(module: AgeGenderModule, model_cfg: DictConfig) -> None:
    """model.channels_last, model.compile and model.frozen_runtime (docs/training_at_scale.md
    has the numbers)."""
    if model_cfg.get("channels_last"):
        # Weights in NHWC make every convolution (and so its input) channels-last.
        module.net.to(memory_format=torch.channels_last)
    if model_cfg.get("compile"):
        # In place, so parameter names (and checkpoints) stay those of the plain network.
        module.net.compile()
    module.net.run_frozen_blocks_on(model_cfg.get("frozen_runtime", "torch"))


def trainer_flags(cfg: DictConfig) -> dict[str, Any]:
    """cfg.trainer, refusing keys that lightning.Trainer does not take (one line, not a
    TypeError traceback)."""
    flags = {k: v for k, v in _container(cfg.trainer).items() if not k.startswith("_")}
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


def check_optim(cfg: DictConfig) -> None:
    """Build optim.optimizer and optim.scheduler once as partials, so a misspelt `_target_`
    is one line before any work (the module builds them again for the Trainer)."""
    build(cfg.optim.optimizer, "optim.optimizer")
    if cfg.optim.get("scheduler"):
        build(cfg.optim.scheduler, "optim.scheduler")


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


def split_file(
    cfg: DictConfig, run_dir: Path, start: LoadedCheckpoint | None, resume_from: Path | None
) -> str | None:
    """The split to reuse: a resumed run's own, else data.split_file, else (finetune) the
    start checkpoint's, so the frozen phase's test set stays the test set."""
    if resume_from is not None and (run_dir / "split.json").is_file():
        return str(run_dir / "split.json")
    if cfg.data.get("split_file"):
        return str(cfg.data.split_file)
    inherited = start.meta.get("split_file") if start is not None else None
    if inherited and Path(inherited).is_file():
        log.info("using the split of the start checkpoint: %s", inherited)
        return str(inherited)
    return None


def finite(value: Any) -> Any:
    """NaN and infinities (an empty split's metrics) as None, so metrics.json is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


# what Hydra puts in a run folder before train.py's own code runs
HYDRA_ONLY = {".hydra", "train.log"}


def discard_refused_run(run_dir: Path, outputs_dir: Path) -> None:
    """Remove the run folder Hydra made for a run refused before any work (it holds only
    Hydra's config copy and the log), and its phase folder if that is left empty, so that a
    refused command leaves no files behind. A folder holding anything else stays."""
    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} <= HYDRA_ONLY:
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir.parent
    inside = outputs_dir.resolve() in parent.resolve().parents
    if inside and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def run_phase(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Fit one phase, test its best checkpoint, and write metrics.json into run_dir.

    The run folder holds a RUNNING marker until metrics.json is written; resume=RUN_DIR
    continues a killed run from its last.ckpt.
    """
    route_lightning_logs()
    L.seed_everything(int(cfg.seed), workers=True)
    # A backbone without ImageNet weights drives activations into denormal floats, which x86
    # CPUs compute many times slower; flushing them to zero changes no result
    # (docs/training_at_scale.md).
    torch.set_flush_denormal(True)
    if cfg.phase.name not in PHASES:
        raise UserError(f"phase={cfg.phase.name}: choose phase=frozen or phase=finetune")
    trainer_flags(cfg)  # bad flags: one line before any work
    check_optim(cfg)
    if cfg.data.get("age_balance"):
        balance_options(_container(cfg.data.age_balance))
    if cfg.data.get("root") and not cfg.data.get("synthetic"):
        check_root(str(cfg.data.root))  # before the model loads (or downloads) its weights
    resume_from = resume_checkpoint(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)  # what ${run_dir} means in the logger/ and callbacks/ configs
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
    datamodule: UTKFaceDataModule = build(
        cfg.data, "data", split_file=split_file(cfg, run_dir, start, resume_from), split_dir=run_dir
    )
    trainer: L.Trainer = build(
        cfg.trainer,
        "trainer",
        default_root_dir=run_dir,
        logger=instantiate_group(cfg.get("logger"), "logger") or False,
        callbacks=instantiate_group(cfg.get("callbacks"), "callbacks"),
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
