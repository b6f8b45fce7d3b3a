"""The command-line entry points: `agegender-train`, `-live`, `-export`, `-eval`, `-serve`.

The top-level train.py, live.py, export.py, eval.py and serve.py of a source checkout call the
same functions. Each composes its Hydra config (conf/, shipped inside the package as
agegender/conf), validates it, calls the library, and turns a `UserError` into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from agegender.configs import config_dir, group_options
from agegender.errors import UserError, report_user_errors
from agegender.validation import EVAL, EXPORT, LIVE, SERVE, TRAIN, ConfigError, validate_entry

CONFIG_DIR = str(config_dir())


def _hydra_main(config_name: str):  # noqa: ANN202 (hydra.main's own decorator type)
    return hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")


@report_user_errors
def _check_groups() -> None:
    """`group=option` naming no file of conf/<group>/ (detector=bogus, phase=bogus) is one
    line and exit 2, before Hydra would answer with many lines. Sweeps (a,b) pass through."""
    for argument in sys.argv[1:]:
        name, equals, value = argument.lstrip("+").partition("=")
        if not equals or not re.fullmatch(r"\w+", name) or not re.fullmatch(r"[\w-]+", value):
            continue
        options = group_options(name)
        if options and value not in options and value != "null":
            raise ConfigError(f"{name}={value}: unknown; choose one of {', '.join(options)}")


@_hydra_main("train")
@report_user_errors
def _train(cfg: DictConfig) -> float | None:
    from agegender.training import discard_refused_run, run_phase

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate_entry(cfg, TRAIN)
        summary = run_phase(cfg, run_dir)
    except UserError:
        if not cfg.get("resume"):  # a resumed run's folder is the user's run: never touched
            discard_refused_run(run_dir, Path(str(cfg.outputs_dir)))
        raise
    print(f"\n{summary['phase']} phase done. Run folder: {run_dir}")
    print(f"  best checkpoint: {summary['best_checkpoint']}")
    print(f"  plots:           {run_dir / 'plots'}")
    print(f"  metrics:         {run_dir / 'metrics.json'}")
    print(f"  dashboards:      tensorboard --logdir {cfg.outputs_dir}")
    # The value a sweeper (e.g. hparams_search=optuna) minimises.
    return summary.get("best_val_age_mae")


def train() -> None:
    """`agegender-train phase=frozen|finetune ...`; `resume=RUN_DIR` continues a killed run
    with the run's own config (overrides given with it win)."""
    from agegender.resume import expand_resume_or_exit

    sys.argv = expand_resume_or_exit(sys.argv)
    _check_groups()
    _train()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C: outputs are closed and complete


@_hydra_main("live")
@report_user_errors
def _live(cfg: DictConfig) -> None:
    from agegender.inference.pipeline import EXIT_INTERRUPTED, EXIT_LOST_FRAMES, run_from_config

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    config = validate_entry(cfg, LIVE)
    try:
        summary = run_from_config(config)
    except KeyboardInterrupt:  # before the loop started (loading the model, opening a camera)
        print("live: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary.stopped == "interrupt":
        sys.exit(EXIT_INTERRUPTED)
    if summary.problem and not config.get("allow_lost_frames", False):
        sys.exit(EXIT_LOST_FRAMES)


def live() -> None:
    """`agegender-live ckpt=PATH source=0|VIDEO|IMAGE|FOLDER|URL` (options: conf/live.yaml).

    Exit status: 0 done, 2 bad input, 3 the source lost frames (unless
    allow_lost_frames=true), 130 interrupted."""
    _check_groups()
    _live()


@_hydra_main("export")
@report_user_errors
def _export(cfg: DictConfig) -> None:
    from agegender.checkpoint import resolve_checkpoint
    from agegender.export import export as export_model
    from agegender.export.quantize import report_lines

    validate_entry(cfg, EXPORT)
    checkpoint = resolve_checkpoint(cfg.ckpt, cfg.outputs_dir)
    result = export_model(
        checkpoint,
        out=cfg.out,
        fmt=cfg.format,
        opset=int(cfg.opset),
        quantize=cfg.quantize,
        quantize_method=cfg.quantize_method,
        data_cfg=OmegaConf.to_container(cfg.data, resolve=True),  # type: ignore[arg-type]
        parity_images=int(cfg.parity.images),
        age_tolerance=float(cfg.parity.age_tolerance),
        p_tolerance=float(cfg.parity.p_female_tolerance),
        speed_seconds=float(cfg.speed_seconds),
    )
    print(f"\nExported {checkpoint}\n  -> {result.path} ({result.format})")
    print(f"  parity with PyTorch: {result.parity.line()}")
    if result.int8_path is not None and result.int8 is not None:
        print(f"  int8: {result.int8_path}")
        for line in report_lines(result.int8):
            print(f"    {line}")
    if result.format == "onnx":
        # the console script where export ran as one (there may be no live.py in that folder)
        live_command = (
            "agegender-live"
            if Path(sys.argv[0]).name.startswith("agegender-")
            else "python live.py"
        )
        print(f"  run it: {live_command} ckpt={result.path}")


def export() -> None:
    """`agegender-export ckpt=latest` writes a parity-checked model.onnx (conf/export.yaml)."""
    _check_groups()
    _export()


@_hydra_main("eval")
@report_user_errors
def _evaluate(cfg: DictConfig) -> float:
    from agegender.checkpoint import resolve_checkpoint
    from agegender.evaluation.report import framing_label, shown_variant
    from agegender.evaluation.run import evaluate as evaluate_model
    from agegender.io import write_atomic

    validate_entry(cfg, EVAL)
    model = resolve_checkpoint(cfg.ckpt, cfg.outputs_dir)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    result = evaluate_model(
        model,
        data_cfg,  # type: ignore[arg-type]
        out_dir=cfg.out,
        part=cfg.split,
        tta=cfg.tta,
        batch_size=int(cfg.batch_size),
        worst=int(cfg.worst),
        tensorboard=bool(cfg.tensorboard),
        crop=str(cfg.crop),
        runtime=str(cfg.runtime),
        overlap=str(cfg.overlap),
        match_source=bool(cfg.match_source),
    )
    write_atomic(result.out_dir / "eval_config.yaml", OmegaConf.to_yaml(cfg))
    overall = result.summary["results"][shown_variant(cfg.tta)]["overall"]
    print(f"\nEvaluated {model} on {result.summary['data']}")
    print(f"  {framing_label(result.summary)}: {result.summary['framing']}")
    for name, res in result.summary["results"].items():
        o = res["overall"]
        print(
            f"  {name:5s}  age MAE {o['age_mae']:.2f}  RMSE {o['age_rmse']:.2f}  "
            f"CS@5 {o['age_cs5']:.1%}  bias {o['age_bias']:+.2f}  "
            f"gender acc {o['gender_acc']:.1%}"
        )
    print(f"  report:  {result.out_dir / 'report.md'}")
    print(f"  metrics: {result.out_dir / 'metrics.json'}")
    if cfg.tensorboard:
        print(f"  dashboards: tensorboard --logdir {result.out_dir / 'tensorboard'}")
    return overall["age_mae"]


def evaluate() -> None:
    """`agegender-eval ckpt=latest` (the run's saved test split) or `data.root=PATH`."""
    _check_groups()
    _evaluate()


@_hydra_main("serve")
@report_user_errors
def _serve(cfg: DictConfig) -> None:
    from agegender.serve.run import run_from_config

    run_from_config(validate_entry(cfg, SERVE))


def serve() -> None:
    """`agegender-serve ckpt=PATH|latest [port=8000] [host=127.0.0.1]`: the web app and REST
    API (conf/serve.yaml); a missing checkpoint or a busy port is one line and exit 2."""
    _check_groups()
    _serve()
