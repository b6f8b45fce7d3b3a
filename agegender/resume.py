"""Resuming a killed training run, and telling finished runs from unfinished ones.

`python train.py resume=RUN_DIR [overrides]` composes the run's own overrides (saved by Hydra
in RUN_DIR/.hydra/overrides.yaml), its config group choices (RUN_DIR/.hydra/hydra.yaml) and
the finetune phase's shape as it ran (RUN_DIR/.hydra/config.yaml), so that a default changed
since, such as the finetune's schedule or its first trainable block, does not change the
run, followed by the new ones, writes Hydra's files for the
resumed part into RUN_DIR/.hydra/resume-<time>/ (the run's own .hydra files stay as they
were), and training continues from RUN_DIR/checkpoints/last.ckpt through Lightning's
`ckpt_path`: weights, optimizer, scheduler, epoch and callback state.

A run folder holds a RUNNING marker from its start until metrics.json is written, so a run
that was killed (or is still training) is never taken for a finished one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from agegender.errors import EXIT_USER_ERROR, UserError

RUNNING = "RUNNING"
METRICS = "metrics.json"
LAST = Path("checkpoints") / "last.ckpt"
# Overrides that name the run folder: the resumed run keeps RUN_DIR instead.
_NOT_REPLAYED = ("resume", "hydra.run.dir", "hydra.output_subdir", "hydra.job.name")


class ResumeError(UserError):
    """resume=RUN_DIR that cannot be continued."""


def is_finished(run_dir: Path) -> bool:
    """A run that wrote metrics.json and no longer holds the RUNNING marker."""
    return (run_dir / METRICS).is_file() and not (run_dir / RUNNING).exists()


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _saved_hydra_file(run_dir: Path, name: str) -> object:
    """RUN_DIR/.hydra/NAME parsed, or None where it is missing or unreadable.

    For what resume adds to the run's overrides: without the file, the overrides alone
    are replayed, as for runs saved before it was read.
    """
    try:
        return yaml.safe_load((run_dir / ".hydra" / name).read_text())
    except (OSError, yaml.YAMLError):
        return None


def _saved_choices(run_dir: Path) -> list[str]:
    """`group=choice` for each of the run's config groups (Hydra's own left out), as it ran."""
    try:
        choices = _saved_hydra_file(run_dir, "hydra.yaml")["hydra"]["runtime"]["choices"]
    except (KeyError, TypeError):
        return []
    if not isinstance(choices, dict):
        return []
    return [
        f"{group}={choice}"
        for group, choice in choices.items()
        if choice is not None and not str(group).startswith("hydra/")
    ]


def _saved_shape(run_dir: Path) -> list[str]:
    """`key=value` for the finetune phase's length, rate and trainable blocks as the run had them.

    These are plain keys, not groups, whose defaults move as they are re-measured; a resumed
    run given other values would not match its saved optimiser and schedule.
    """
    config = _saved_hydra_file(run_dir, "config.yaml")
    if not isinstance(config, dict):
        return []
    values = {}
    finetune = config.get("finetune")
    if isinstance(finetune, dict):
        values.update({f"finetune.{key}": value for key, value in finetune.items()})
    phase = config.get("phase")
    if isinstance(phase, dict) and "trainable_from" in phase:
        values["phase.trainable_from"] = phase["trainable_from"]
    # numbers only: an interpolation (phase.trainable_from: ${finetune.trainable_from}) follows
    # its source, the schedule (finetune.scheduler) comes back with its group choice, and a
    # frozen run's null trainable_from is its phase's own
    return [
        f"{key}={value}"
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


def resume_argv(argv: list[str]) -> list[str]:
    """The command line for `train.py` with resume=RUN_DIR expanded (unchanged without it)."""
    given = [arg for arg in argv[1:] if _key(arg) == "resume" and "=" in arg]
    if not given:
        return argv
    value = given[-1].split("=", 1)[1]
    if value in ("", "null"):
        return argv
    if any(arg in ("-m", "--multirun") for arg in argv[1:]):
        raise ResumeError("resume= continues one run; it cannot be combined with -m")
    run_dir = Path(value).expanduser()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / LAST).is_file():
        raise ResumeError(
            f"resume={run_dir}: no {LAST} there; give the folder of a train.py run "
            f"(outputs/<phase>/<time>) that saved at least one epoch"
        )
    if is_finished(run_dir):
        raise ResumeError(
            f"resume={run_dir}: this run already finished (metrics.json written); start a new "
            f"run, e.g. with init_from={run_dir / 'checkpoints' / 'best.ckpt'}"
        )
    if not saved.is_file():
        raise ResumeError(f"resume={run_dir}: {saved} is missing, so its config is unknown")
    try:
        original = yaml.safe_load(saved.read_text()) or []
    except (OSError, yaml.YAMLError) as error:
        raise ResumeError(f"resume={run_dir}: cannot read {saved} ({error})") from error
    if not isinstance(original, list):
        raise ResumeError(f"resume={run_dir}: {saved} is not a list of overrides")
    new = [arg for arg in argv[1:] if _key(arg) not in _NOT_REPLAYED]
    changed = {_key(arg) for arg in new if "=" in arg}
    kept = [str(o) for o in original if _key(str(o)) not in changed | set(_NOT_REPLAYED)]
    named = changed | {_key(o) for o in kept}
    kept += [c for c in _saved_choices(run_dir) if _key(c) not in named]
    kept += [v for v in _saved_shape(run_dir) if _key(v) not in named]
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    return [
        argv[0],
        *kept,
        *new,
        f"resume={run_dir}",
        f"hydra.run.dir={run_dir}",
        f"hydra.output_subdir=.hydra/resume-{stamp}",
    ]


def expand_resume_or_exit(argv: list[str]) -> list[str]:
    """`resume_argv` for an entry point: a ResumeError is one line and exit status 2."""
    try:
        return resume_argv(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
