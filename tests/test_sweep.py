"""Hydra multirun through train.py: the basic sweeper, and the optional Optuna search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_entry, tiny_training


def tiny(tmp_path: Path) -> list[str]:
    return [*tiny_training(tmp_path), "logger=none", f"outputs_dir={tmp_path / 'outputs'}"]


def sweep_jobs(tmp_path: Path) -> tuple[Path, list[Path]]:
    sweeps = list((tmp_path / "outputs" / "multirun" / "frozen").iterdir())
    assert len(sweeps) == 1, sweeps
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    return sweeps[0], jobs


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two OpenMP threads on a shared two-core CPU wait on each other at every operator.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow  # a process per job; make test-slow runs it
def test_multirun_over_two_learning_rates_completes(tmp_path: Path) -> None:
    result = run_entry("train.py", "-m", "optim.lr=1e-3,1e-4", *tiny(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    _, jobs = sweep_jobs(tmp_path)
    assert [job.name for job in jobs] == ["0", "1"]
    learning_rates = []
    for job in jobs:
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        learning_rates.append(config["optim"]["lr"])
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["best_val_age_mae"] is not None and metrics["test"]
        assert (job / "checkpoints" / "best.ckpt").is_file()
    assert learning_rates == [1e-3, 1e-4]
    # The second job reused the features the first one computed.
    assert "computed" in (jobs[0] / "train.log").read_text()
    assert "reused" in (jobs[1] / "train.log").read_text()


@pytest.mark.slow
def test_optuna_search_minimises_val_age_mae(tmp_path: Path) -> None:
    # make test-slow installs the optuna extra; without it this fails rather than skips
    import hydra_plugins.hydra_optuna_sweeper  # noqa: F401

    result = run_entry(
        "train.py",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *tiny(tmp_path),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    sweep, jobs = sweep_jobs(tmp_path)
    assert len(jobs) == 3
    found = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    searched = {"optim.lr", "model.dropout", "model.hidden_units", "loss.w_age", "loss.w_gender"}
    assert set(found["best_params"]) == searched
    scores = [json.loads((job / "metrics.json").read_text())["best_val_age_mae"] for job in jobs]
    assert found["best_value"] == pytest.approx(min(scores))
