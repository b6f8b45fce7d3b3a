"""Two-phase training through the real train.py entry point."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import torch

from tests.conftest import run_entry, write_untrained_checkpoint


def test_training_learns_age_and_gender_on_held_out_faces(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    test = metrics["test"]
    baseline = metrics["baseline_test_age_mae"]
    assert baseline > 5  # a sensible spread of ages, or the bar would mean nothing
    assert test["test/age_mae"] <= 0.6 * baseline, (test, baseline)
    assert test["test/gender_acc"] >= 0.9, test


def test_run_folder_holds_config_checkpoints_plots_split_and_dashboards(trained_run: Path) -> None:
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    split = json.loads((trained_run / "split.json").read_text())
    assert len(split["train"]) > 300 and len(split["test"]) > 30
    for name in ("age_mae.png", "gender_acc.png", "loss.png"):
        image = cv2.imread(str(trained_run / "plots" / name))
        assert image is not None and image.shape[0] > 100, name
    history = json.loads((trained_run / "plots" / "history.json").read_text())
    assert len(history) >= 2 and {"train/age_mae", "val/age_mae"} <= history[0].keys()
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["agegender"]["image_size"] == 64
    assert checkpoint["agegender"]["split_file"] == str(trained_run / "split.json")


def test_finetune_starts_from_the_newest_finished_frozen_best(trained_run: Path) -> None:
    outputs = trained_run.parents[1]
    best = trained_run / "checkpoints" / "best.ckpt"
    # Decoys: an older finished frozen run, and a newer one that was killed (RUNNING marker).
    older = write_untrained_checkpoint(outputs / "frozen" / "0-older" / "checkpoints" / "best.ckpt")
    (older.parents[1] / "metrics.json").write_text(json.dumps({"phase": "frozen"}))
    killed = write_untrained_checkpoint(
        outputs / "frozen" / "z-killed" / "checkpoints" / "best.ckpt", seed=1
    )
    (killed.parents[1] / "RUNNING").write_text("pid 1\n")
    now = time.time()
    os.utime(older, (now - 3600, now - 3600))
    os.utime(best, (now - 60, now - 60))
    try:
        result = run_entry(
            "train.py",
            "phase=finetune",
            "debug=fast",
            f"data.root={json.loads((trained_run / 'split.json').read_text())['root']}",
            "data.image_size=64",
            f"data.cache_dir={outputs / 'cache'}",
            f"outputs_dir={outputs}",
        )
    finally:
        shutil.rmtree(older.parents[1])
        shutil.rmtree(killed.parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 unfinished run(s)" in result.stderr and "z-killed" in result.stderr
    finetune_run = next((outputs / "finetune").iterdir())
    log = (finetune_run / "train.log").read_text()
    assert f"finetune starts from {best}" in log
    # Lightning's lines once on the console (not also through its own handler), and in the log.
    console = result.stdout + result.stderr
    assert console.count("Seed set to") == 1 and "Seed set to" in log, console[-3000:]
    assert "litlogger" not in console
    # The blocks below features[4] stay frozen in finetune, so they must be exactly the
    # frozen run's trained weights (random init or a decoy would differ).
    start = torch.load(best, weights_only=True)["state_dict"]
    tuned = torch.load(finetune_run / "checkpoints" / "best.ckpt", weights_only=True)
    frozen_keys = [k for k in start if k.startswith("net.features.") and int(k.split(".")[2]) < 4]
    assert len(frozen_keys) > 50
    for key in frozen_keys:
        assert torch.equal(start[key], tuned["state_dict"][key]), key
    # The frozen phase's test set is kept exactly.
    frozen_split = json.loads((trained_run / "split.json").read_text())
    finetune_split = json.loads((finetune_run / "split.json").read_text())
    assert finetune_split["test"] == frozen_split["test"]
    assert tuned["agegender"]["phase"] == "finetune"
    assert tuned["hyper_parameters"]["trainable_from"] == 4


def test_finetune_without_a_frozen_run_says_what_to_do(tmp_path: Path) -> None:
    result = run_entry("train.py", "phase=finetune", f"outputs_dir={tmp_path}", "data=synthetic")
    assert result.returncode == 2
    assert "Run `python train.py phase=frozen` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_root_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_entry(
        "train.py",
        f"data.root={tmp_path / 'nowhere'}",
        "model.pretrained=none",
        f"outputs_dir={tmp_path}",
    )
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Kaggle" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_data_root_at_all_points_to_the_options(tmp_path: Path) -> None:
    result = run_entry("train.py", "model.pretrained=none", f"outputs_dir={tmp_path}")
    assert result.returncode == 2
    assert "data.root=PATH" in result.stderr and "data=synthetic" in result.stderr


def test_frozen_init_from_is_honoured_and_an_empty_test_split_writes_valid_json(
    tmp_path: Path, synthetic_root: Path, untrained_checkpoint: Path
) -> None:
    from agegender.configs import compose_config
    from tests.conftest import run_phase_on_one_thread

    overrides = [
        "phase=frozen",
        f"init_from={untrained_checkpoint}",
        "model.pretrained=none",
        "debug=fast",
        "logger=none",
        "callbacks.plots=false",
        "data.image_size=64",
        "data.split.test=0.0",
        f"data.root={synthetic_root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"outputs_dir={tmp_path}",
    ]
    cfg = compose_config("train", *overrides)
    run_dir = tmp_path / "frozen" / "run"
    run_phase_on_one_thread(cfg, run_dir)

    def no_nan(text: str) -> None:
        raise AssertionError(f"{text} in metrics.json")

    metrics = json.loads((run_dir / "metrics.json").read_text(), parse_constant=no_nan)
    assert metrics["test"] is None and metrics["baseline_test_age_mae"] is None
    assert not (run_dir / "RUNNING").exists()
    # The frozen phase trains only the heads: the backbone is exactly init_from's.
    start = torch.load(untrained_checkpoint, weights_only=True)["state_dict"]
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    backbone = [key for key in start if key.startswith("net.features.")]
    assert len(backbone) > 100
    assert all(torch.equal(start[key], best[key]) for key in backbone)
