"""Shared fixtures: small checkpoints and generated data, built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from agegender.checkpoint import build_meta, save_checkpoint
from agegender.scenes import random_net
from agegender.scenes import write_untrained_checkpoint as write_scene_checkpoint


def write_untrained_checkpoint(path: Path, image_size: int = 64, seed: int = 0) -> Path:
    """A valid agegender checkpoint with random weights (fast; for plumbing tests)."""
    return write_scene_checkpoint(path, image_size, seed, framed=False)


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "untrained.ckpt")


REPO = Path(__file__).resolve().parents[1]

# The learning run: the real train.py configuration on a few hundred generated faces,
# every layer trainable from random init (ImageNet weights cannot be downloaded here).
LEARNING_OVERRIDES = (
    "phase=frozen",
    "phase.trainable_from=0",
    "model.pretrained=none",
    "data.image_size=64",
    "data.batch_size=32",
    "data.num_workers=0",
    "trainer.max_epochs=20",
    "callbacks.early_stopping.patience=20",
    "callbacks.sample_grid.count=4",
)


def tiny_training(tmp_path: Path) -> list[str]:
    """Overrides for a run of a few batches on 64 generated faces, from random weights."""
    return [
        "debug=fast",
        "data=synthetic",
        "data.synthetic.count=64",
        "data.synthetic.image_size=64",
        "data.image_size=32",
        "data.batch_size=8",
        "model.pretrained=none",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]


def run_phase_on_one_thread(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """training.run_phase in-process, on one thread (the other core runs another test)."""
    from agegender.training import run_phase

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_phase(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)


def run_entry(script: str, *overrides: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run an entry script (train.py, live.py, ...) as a user would, from the repo root."""
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UTKFace-format folder of 480 generated faces (shared by the session's tests)."""
    from agegender.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("data") / "faces", 480, seed=0, progress=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """Run folder of a short real training on generated data (outputs_dir is its grandparent)."""
    outputs = tmp_path_factory.mktemp("outputs")
    result = run_entry(
        "train.py",
        *LEARNING_OVERRIDES,
        f"data.root={synthetic_root}",
        f"data.cache_dir={outputs / 'cache'}",
        f"outputs_dir={outputs}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = sorted((outputs / "frozen").iterdir())
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="session")
def brief_run(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """Run folder of a seconds-long finetune run (debug=fast) on generated faces.

    For export and evaluation tests, which need a real run (checkpoint, split.json, test
    metrics) whose predictions vary with the face, not a good model. It starts from random
    weights with BatchNorm statistics estimated on random images: plain random init predicts
    the same for every face, which would make parity and metric checks vacuous. Trained in
    this process through train.py's own config and `run_phase` (a subprocess would import
    torch and Lightning a second time).
    """
    from agegender.configs import compose_config
    from agegender.training import run_phase

    folder = tmp_path_factory.mktemp("brief")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is steadier, and here faster, on a shared 2-core CPU
    try:
        net = random_net(64)
        net.init_age_bias(35.0)
        save_checkpoint(folder / "start.ckpt", net, build_meta(net.config, 64, (1, 80), "frozen"))
        overrides = [
            "phase=finetune",
            f"init_from={folder / 'start.ckpt'}",
            "model.pretrained=none",
            "debug=fast",
            "logger=none",
            "callbacks.plots=false",
            "data.augment.affine=null",  # per-sample affine and colour jitter cost more than
            "data.augment.color_jitter=null",  # the three training steps themselves
            "data.image_size=64",
            f"data.root={synthetic_root}",
            f"data.cache_dir={folder / 'cache'}",
            f"outputs_dir={folder}",
        ]
        cfg = compose_config("train", *overrides)
        run_dir = folder / "finetune" / "run"
        run_phase(cfg, run_dir)
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="session")
def brief_onnx(brief_run: Path) -> Path:
    """The brief run's best checkpoint exported (parity-checked) to model.onnx beside it."""
    from agegender.export import export

    return export(brief_run / "checkpoints" / "best.ckpt").path


@pytest.fixture(scope="session")
def varied_checkpoint(brief_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The brief run's best checkpoint with its heads' weights scaled up: the same trained
    features, but answers that spread over tens of years and most of P(female) across faces,
    so a parity check with a tolerance of 0.05 years really compares something."""
    raw = torch.load(brief_run / "checkpoints" / "best.ckpt", weights_only=True)
    state = raw["state_dict"]
    state["net.age_head.weight"] = state["net.age_head.weight"] * 40
    state["net.gender_head.weight"] = state["net.gender_head.weight"] * 10
    path = tmp_path_factory.mktemp("varied") / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(raw, path)
    return path


@pytest.fixture(scope="session")
def varied_onnx(varied_checkpoint: Path) -> Path:
    from agegender.export import export

    return export(varied_checkpoint).path
