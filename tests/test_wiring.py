"""Wiring by config: what Hydra builds from `_target_`, and the one home of each default."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from agegender.configs import compose_config, config_dir
from agegender.faces.detectors import Box, Detector, DetectorError, build_detector
from agegender.inference.pipeline import LiveSettings
from agegender.inference.tracking import IouTracker

CONF = config_dir()


def test_the_config_groups_are_built_from_target() -> None:
    for group in ("model", "data", "callbacks", "logger", "detector", "trainer", "schedule"):
        files = sorted((CONF / group).glob("*.yaml"))
        assert files, group
        assert any("_target_" in path.read_text() for path in files), group
    for path in (CONF / "detector").glob("*.yaml"):
        assert "_target_" in OmegaConf.load(path), path.name


def test_logger_none_also_drops_the_lr_monitor_and_callbacks_switch_off_by_config() -> None:
    cfg = compose_config("train", "logger=none", "callbacks.plots=false")
    assert cfg.logger is None and cfg.callbacks.lr_monitor is None and not cfg.callbacks.plots
    cfg = compose_config("train", "logger=csv", "callbacks.sample_grid=null")
    assert cfg.logger.csv._target_.endswith("CSVLogger") and cfg.callbacks.sample_grid is None


def test_a_new_callback_is_config_alone(tmp_path: Path) -> None:
    from agegender.training import instantiate_group

    cfg = compose_config(
        "train",
        "+callbacks.timer={_target_: lightning.pytorch.callbacks.Timer, duration: '00:01:00:00'}",
        "callbacks.sample_grid=false",
    )
    cfg.run_dir = str(tmp_path)
    built = instantiate_group(cfg.callbacks, "callbacks")
    names = [type(callback).__name__ for callback in built]
    assert "Timer" in names and "SampleGrid" not in names and "ModelCheckpoint" in names
    (checkpoint,) = [c for c in built if type(c).__name__ == "ModelCheckpoint"]
    assert Path(checkpoint.dirpath) == tmp_path / "checkpoints"


def test_a_callback_that_is_not_a_target_is_one_clear_error() -> None:
    from agegender.errors import UserError
    from agegender.training import instantiate_group

    cfg = compose_config("train", "callbacks.sample_grid=4")
    cfg.run_dir = "."
    with pytest.raises(UserError, match=r"callbacks.sample_grid=4: give a mapping with _target_"):
        instantiate_group(cfg.callbacks, "callbacks")


def test_logger_csv_trains_with_no_code_change(tmp_path: Path) -> None:
    """logger=csv: Lightning's CSVLogger, from conf/logger/csv.yaml alone."""
    from agegender.data.synthetic import generate_dataset
    from tests.conftest import run_phase_on_one_thread

    faces = generate_dataset(tmp_path / "faces", 40, seed=3, image_size=48, progress=False)
    cfg = compose_config(
        "train",
        "phase=frozen",
        "logger=csv",
        "model.pretrained=none",
        "debug=fast",
        "callbacks.plots=false",
        "data.crop=null",
        "data.image_size=32",
        "data.batch_size=8",
        f"data.root={faces}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"outputs_dir={tmp_path}",
    )
    run_dir = tmp_path / "frozen" / "run"
    run_phase_on_one_thread(cfg, run_dir)
    metrics = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    assert "val/age_mae" in header and "lr-Adam" in header and len(metrics) > 1
    assert not (run_dir / "tensorboard").exists()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()


def test_a_new_detector_is_a_class_and_a_yaml_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf" / "detector"
    folder.mkdir(parents=True)
    (folder / "corner.yaml").write_text(f"_target_: {__name__}.CornerDetector\nsize: 7\n")
    cfg = compose_config(
        "live", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "detector=corner"
    )
    detector = build_detector(OmegaConf.to_container(cfg.detector))
    assert detector.detect(np.zeros((20, 20, 3), np.uint8)) == [Box(0, 0, 7, 7)]
    with pytest.raises(DetectorError, match="bad option"):
        build_detector({**OmegaConf.to_container(cfg.detector), "colour": "red"})


class CornerDetector(Detector):
    name = "corner"

    def __init__(self, size: int) -> None:
        self.size = size

    def detect(self, frame: np.ndarray) -> list[Box]:
        return [Box(0, 0, self.size, self.size)]


@pytest.mark.parametrize("name", ["yunet", "haar", "full_frame"])
def test_detector_files_agree_with_their_classes(name: str) -> None:
    """Training data preparation builds the face path's detector by name from the same file;
    a class default that disagreed with it would never be used, and would mislead."""
    config = OmegaConf.to_container(OmegaConf.load(CONF / "detector" / f"{name}.yaml"))
    target = config.pop("_target_")
    cls = build_detector(name).__class__
    assert f"{cls.__module__}.{cls.__qualname__}" == target
    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(cls.__init__).parameters.items()
        if key != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
    }
    assert set(config) == set(defaults)
    for key, value in config.items():
        assert value == defaults[key], key


def test_live_yaml_is_the_home_of_the_pipeline_defaults() -> None:
    live = OmegaConf.load(CONF / "live.yaml")
    settings = LiveSettings()
    for key in LiveSettings.__dataclass_fields__:
        assert getattr(settings, key) == live[key], key
    tracker = IouTracker()
    assert tracker.max_missed_frames == live.max_missed_frames and tracker.hold == live.hold
    assert tracker.iou_threshold == live.iou_threshold and tracker.smoothing == live.smoothing


def test_a_target_that_cannot_be_built_is_one_user_error() -> None:
    from agegender.errors import UserError
    from agegender.training import instantiate_group

    cfg = compose_config("train", "+callbacks.bad={_target_: nowhere.Missing}")
    cfg.run_dir = "."
    with pytest.raises(UserError, match=r"callbacks.bad: cannot build nowhere.Missing"):
        instantiate_group(cfg.callbacks, "callbacks")


def test_a_misspelt_optimizer_or_schedule_is_one_user_error_before_any_work() -> None:
    from agegender.errors import UserError
    from agegender.training import check_optim

    check_optim(compose_config("train", "phase=finetune"))  # the shipped partials build
    bad = compose_config("train", "optim.optimizer._target_=torch.optim.Adamm")
    with pytest.raises(UserError, match=r"optim.optimizer: cannot build torch.optim.Adamm"):
        check_optim(bad)
    bad = compose_config("train", "phase=finetune", "finetune.scheduler._target_=nowhere.Cos")
    with pytest.raises(UserError, match=r"optim.scheduler: cannot build nowhere.Cos"):
        check_optim(bad)
