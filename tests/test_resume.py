"""A killed training run continues with `train.py resume=RUN_DIR`; unfinished runs are skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agegender.checkpoint import CheckpointError, find_latest_best, resolve_checkpoint
from agegender.configs import compose_config
from agegender.resume import RUNNING, ResumeError, resume_argv
from tests.conftest import REPO, run_entry, write_untrained_checkpoint

EPOCHS = 6
TINY = (
    "phase=frozen",
    "model.pretrained=none",
    "data.image_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    f"trainer.max_epochs={EPOCHS}",
    "+trainer.limit_train_batches=4",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "callbacks.early_stopping.patience=50",
    "logger=none",
)


def finished_run(outputs: Path, phase: str, name: str) -> Path:
    best = write_untrained_checkpoint(outputs / name / "checkpoints" / "best.ckpt")
    (best.parent.parent / "metrics.json").write_text(json.dumps({"phase": phase}))
    return best


def test_latest_searches_everywhere_and_skips_unfinished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(CheckpointError, match="ckpt=latest"):
        resolve_checkpoint("latest", tmp_path)
    old = finished_run(tmp_path, "frozen", "frozen/r1")
    demo = finished_run(tmp_path, "frozen", "demo/frozen/r2")  # make demo's layout
    now = time.time()
    os.utime(old, (now - 60, now - 60))
    assert resolve_checkpoint("latest", tmp_path) == demo
    assert f"ckpt=latest: {demo}" in capsys.readouterr().out
    os.utime(old, (now + 60, now + 60))
    assert resolve_checkpoint("latest", tmp_path) == old

    tuned = finished_run(tmp_path, "finetune", "finetune/r3")
    os.utime(tuned, (1, 1))  # an older finetune still beats any frozen checkpoint
    assert resolve_checkpoint("latest", tmp_path) == tuned

    killed = finished_run(tmp_path, "finetune", "finetune/r4")
    (killed.parent.parent / RUNNING).write_text("pid 1\n")  # metrics of a previous life
    never = write_untrained_checkpoint(tmp_path / "finetune/r5/checkpoints/best.ckpt")
    capsys.readouterr()
    assert resolve_checkpoint("latest", tmp_path) == tuned
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 unfinished run(s)" in err
    assert str(never.parent.parent) in err and "resume=" in err
    assert find_latest_best(tmp_path, "frozen", warn=False) == old
    assert resolve_checkpoint("some/file.ckpt", tmp_path) == Path("some/file.ckpt")


def test_resume_argv_replays_the_runs_overrides(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- phase=frozen\n- optim.lr=0.01\n- seed=3\n")
    with pytest.raises(ResumeError, match="no checkpoints/last.ckpt"):
        resume_argv(["train.py", f"resume={run}"])
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    argv = resume_argv(["train.py", f"resume={run}", "optim.lr=0.5"])
    assert argv[:4] == ["train.py", "phase=frozen", "seed=3", "optim.lr=0.5"]
    assert f"hydra.run.dir={run}" in argv and f"resume={run}" in argv
    assert any(a.startswith("hydra.output_subdir=.hydra/resume-") for a in argv)
    assert resume_argv(["train.py", "phase=frozen"]) == ["train.py", "phase=frozen"]
    with pytest.raises(ResumeError, match="-m"):
        resume_argv(["train.py", "-m", f"resume={run}"])
    (run / "metrics.json").write_text("{}")
    with pytest.raises(ResumeError, match="already finished"):
        resume_argv(["train.py", f"resume={run}"])


def killed_run(tmp_path: Path, *overrides: str) -> Path:
    """A run folder as a killed run leaves it: its saved overrides and a last.ckpt."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    return run


def test_resume_keeps_the_config_groups_the_run_started_with(tmp_path: Path) -> None:
    run = killed_run(tmp_path, "phase=finetune", "logger=csv")
    choices = {
        "phase": "finetune",
        "logger": "csv",
        "schedule": "cosine",  # the default when it started; a later default must not apply
        "trainer": "cpu",
        "experiment": None,
        "hydra/launcher": "basic",
    }
    (run / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}})
    )
    argv = resume_argv(["train.py", f"resume={run}", "trainer=gpu"])
    assert argv[:5] == [
        "train.py",
        "phase=finetune",
        "logger=csv",
        "schedule=cosine",
        "trainer=gpu",
    ]
    assert not any(a.startswith(("experiment=", "hydra/")) for a in argv)
    # the replayed choices compose: the run resumes on its own schedule
    cfg = compose_config("train", *argv[1:4])
    assert cfg.optim.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"


def test_resume_keeps_the_finetune_shape_the_run_started_with(tmp_path: Path) -> None:
    run = killed_run(tmp_path, "phase=finetune", "finetune.epochs=12")
    # saved before finetune.trainable_from existed: the phase held the block itself
    config = {
        "finetune": {"epochs": 12, "lr": 1.0e-4, "scheduler": {"_target_": "x"}},
        "phase": {"name": "finetune", "trainable_from": 10},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    argv = resume_argv(["train.py", f"resume={run}", "finetune.lr=0.001"])
    assert argv[:5] == [
        "train.py",
        "phase=finetune",
        "finetune.epochs=12",
        "phase.trainable_from=10",
        "finetune.lr=0.001",
    ]
    cfg = compose_config("train", *argv[1:5])
    assert cfg.phase.trainable_from == 10 and cfg.optim.lr == 0.001
    # a run saved with the interpolation follows its own finetune.trainable_from
    config["phase"]["trainable_from"] = "${finetune.trainable_from}"
    config["finetune"]["trainable_from"] = 12
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    argv = resume_argv(["train.py", f"resume={run}"])
    assert "finetune.trainable_from=12" in argv and "finetune.lr=0.0001" in argv
    assert not any(a.startswith(("phase.trainable_from=", "finetune.scheduler")) for a in argv)


def test_lightning_1_resume_flag_points_to_resume() -> None:
    from agegender.errors import UserError
    from agegender.training import trainer_flags

    cfg = compose_config("train", "+trainer.resume_from_checkpoint=x.ckpt")
    assert trainer_flags(compose_config("train"))["max_epochs"] == 15
    with pytest.raises(UserError, match="resume=RUN_DIR"):
        trainer_flags(cfg)


def test_resume_of_a_missing_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_entry("train.py", f"resume={tmp_path / 'nothing'}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "resume=" in result.stderr


def last_epoch_saves(last: Path, count: int, process: subprocess.Popen) -> bool:
    """Wait until last.ckpt has been written `count` times (one per finished epoch)."""
    seen, stamp = 0, None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != stamp:
            stamp = last.stat().st_mtime_ns
            seen += 1
            if seen >= count:
                return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_full_epoch_count(
    tmp_path: Path, synthetic_root: Path
) -> None:
    outputs = tmp_path / "outputs"
    overrides = [*TINY, f"data.root={synthetic_root}", f"data.cache_dir={tmp_path / 'cache'}"]
    process = subprocess.Popen(
        [sys.executable, "train.py", *overrides, f"outputs_dir={outputs}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Killed mid-run, in the epoch after the second save of last.ckpt.
        reached = last_epoch_saves(_last(outputs), 2, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert reached, "the run ended before its second epoch was saved"
    (run,) = (outputs / "frozen").iterdir()
    assert (run / RUNNING).exists() and not (run / "metrics.json").exists()
    with pytest.raises(CheckpointError):  # the killed run's best.ckpt is not taken
        resolve_checkpoint("latest", outputs)
    kept = {name: (run / name).read_bytes() for name in (".hydra/overrides.yaml", "split.json")}

    result = run_entry("train.py", f"resume={run}", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == EPOCHS
    assert metrics["test"]["test/age_mae"] > 0
    assert not (run / RUNNING).exists()
    assert [p.name for p in (outputs / "frozen").iterdir()] == [run.name]  # same folder
    history = json.loads((run / "plots" / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(EPOCHS))
    for name, content in kept.items():
        assert (run / name).read_bytes() == content
    log = (run / "train.log").read_text()
    assert "resuming" in log and "Restoring states from the checkpoint" in result.stderr + log
    assert resolve_checkpoint("latest", outputs) == run / "checkpoints" / "best.ckpt"


def _last(outputs: Path) -> Path:
    """last.ckpt of the only run under outputs/frozen, once the folder exists."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list((outputs / "frozen").glob("*")) if (outputs / "frozen").is_dir() else []
        if runs:
            return runs[0] / "checkpoints" / "last.ckpt"
        time.sleep(0.05)
    raise AssertionError("train.py made no run folder")
