"""Config and checkpoint-metadata validation: one line naming the key, the value and the range.

Each entry script checks its composed config against a table of key -> rule before doing any
work. Keys a table does not list are not checked (other options may come and go); keys a
table lists but the config lacks are skipped. Checkpoint metadata is checked the same way
before a network is built from it, for `.ckpt` and `.onnx` alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agegender.errors import UserError

# MobileNetV2's total stride: below it the last feature map is smaller than a pixel.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024


class ConfigError(UserError):
    """A config value of the wrong type or out of range."""


class MetadataError(UserError):
    """A checkpoint or exported model whose agegender metadata is malformed."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Rule:
    """What one key accepts; `check` returns None when the value fits, else what fits."""

    kind: str  # int | float | bool | choice | str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False  # null allowed

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(_show(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a path or name"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text = f"{noun} in {left}{self.low:g}, {self.high:g}{right}"
            elif self.low is not None:
                text = f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.high_open else '<='} {self.high:g}"
            else:
                text = noun
        return text + (" (or null)" if self.optional else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.kind == "str":
            return isinstance(value, str) and value != ""
        if self.kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            return False
        if self.kind == "float" and not (_is_number(value) and math.isfinite(value)):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )


def Int(low: float | None = None, high: float | None = None, optional: bool = False) -> Rule:  # noqa: N802
    return Rule("int", low, high, optional=optional)


def Float(  # noqa: N802
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> Rule:
    return Rule("float", low, high, low_open, high_open, optional=optional)


def Choice(*choices: Any, optional: bool = False) -> Rule:  # noqa: N802
    return Rule("choice", choices=choices, optional=optional)


BOOL = Rule("bool")
PATH = Rule("str", optional=True)
POSITIVE = Float(0, low_open=True)
FRACTION = Float(0, 1, high_open=True)  # a share of the data, never the whole
RUNTIME = Choice("auto", "torch", "onnxruntime")  # what runs a .ckpt (live.py, eval.py)

DATA = {
    "data.image_size": Int(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    "data.batch_size": Int(1),
    "data.num_workers": Int(0),
    "data.split.val": FRACTION,
    "data.split.test": FRACTION,
    "data.split.seed": Int(),
    "data.feature_cache": Choice("auto", True, False),
    "data.root": PATH,
    "data.split_file": PATH,
    "data.crop.align": BOOL,
    "data.crop.margin": Float(0, 2),
    "data.crop.box_margin": Float(0, 3),
    "data.crop.on_miss": Choice("keep", "skip"),
    "data.above_range": Choice("skip", "train"),
}
TRAIN = {
    **DATA,
    "seed": Int(),
    "init_from": PATH,
    "resume": PATH,
    "test_after_fit": BOOL,
    "loss.age": Choice("l1", "mse", "huber"),
    "loss.huber_delta": POSITIVE,
    "loss.dldl_sigma": POSITIVE,
    "loss.dldl_l1": Float(0),
    "model.age_head": Choice("regression", "distribution"),
    "loss.w_age": Float(0),
    "loss.w_gender": Float(0),
    "loss.weighting": Choice("fixed", "uncertainty"),
    "loss.weighting_lr": POSITIVE,
    "optim.backbone_lr_scale": POSITIVE,
    # before optim.lr and phase.trainable_from, which phase=finetune takes from finetune.*:
    # the error names the key set
    "finetune.lr": POSITIVE,
    "finetune.epochs": Int(1),
    "finetune.trainable_from": Int(0, 18),
    "finetune.hue": Float(0, 0.5),
    "data.augment.color_jitter.hue": Float(0, 0.5),
    "optim.lr": POSITIVE,
    "optim.weight_decay": Float(0),
    "model.hidden_units": Int(1),
    "model.dropout": FRACTION,
    "model.pretrained": Choice("imagenet", "none"),
    "model.frozen_runtime": Choice("torch", "onnxruntime"),
    "phase.trainable_from": Int(0, 18, optional=True),
    "trainer.max_epochs": Int(1),
    "callbacks.early_stopping.patience": Int(0),
}
# the detector files' numeric keys (conf/detector/), for live.py and serve.py
DETECTOR = {
    "detector.width": Int(16),
    "detector.threshold": Float(0, 1),
    "detector.min_face": Int(0),
    "detector.still_min": Int(16),
    "detector.still_max": Int(16),
    "detector.still_work": Int(16),
    "detector.refine_px": Int(0),
    "detector.threads": Int(1),
    "detector.min_size": Int(1),
    "detector.min_neighbors": Int(0),
}
# the tracking and prediction keys live.py and serve.py share
PIPELINE = {
    **DETECTOR,
    "detect_every": Int(1),
    "scan_every": Int(1),
    "predict_every": Int(1),
    "smoothing": FRACTION,
    "max_missed_frames": Int(0),
    "hold": Int(0),
    "iou_threshold": Float(0, 1),
    "tta": Choice("none", "flip", optional=True),
    "match_source": BOOL,
    "runtime": RUNTIME,
    "threads": Int(0, optional=True),  # 0 or null: the libraries choose
}
LIVE = {
    **PIPELINE,
    "max_frames": Int(1, optional=True),
    "display": Choice("auto", True, False),
    "save": PATH,
    "jsonl": PATH,
    "csv": PATH,
    "stall_timeout": POSITIVE,
    "allow_lost_frames": BOOL,
}
SERVE = {
    **PIPELINE,
    "workers": Int(1),
    "host": Rule("str"),
    "port": Int(0, 65535),  # 0: a free port, printed at start
    "max_upload_mb": POSITIVE,
    "max_pixels": Int(1),
    "max_clients": Int(1),
    "log_level": Choice("critical", "error", "warning", "info", "debug", "trace"),
    "access_log": BOOL,
}
EXPORT = {
    "opset": Int(17, 30),
    "format": Choice("onnx", "torchscript"),
    "quantize": Choice("int8", optional=True),
    "quantize_method": Choice("static", "dynamic"),
    "parity.images": Int(1, 4096),
    "parity.age_tolerance": POSITIVE,
    "parity.p_female_tolerance": POSITIVE,
    "speed_seconds": POSITIVE,
    "out": PATH,
}
EVAL = {
    "split": Choice("train", "val", "test"),
    "tta": Choice("none", "flip", optional=True),
    "crop": Choice("face", "dataset"),
    "match_source": BOOL,
    "overlap": Choice("skip", "keep"),
    "runtime": RUNTIME,
    "batch_size": Int(1),
    "worst": Int(0),
    "tensorboard": BOOL,
    "out": PATH,
    "data.root": PATH,
    "data.split_file": PATH,
}

_MISSING = object()


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _show(value: Any) -> str:
    """A value as the user would write it; one line even for a value holding a newline."""
    if isinstance(value, bool) or value is None:
        return {None: "null", True: "true", False: "false"}[value]
    text = str(value)
    return text if text.isprintable() else repr(text)


def validate(config: Mapping[str, Any], table: Mapping[str, Rule]) -> None:
    """Raise ConfigError naming the first key whose value breaks its rule."""
    for key, rule in table.items():
        value = _get(config, key)
        if value is _MISSING:
            continue
        if isinstance(value, str) and rule.kind == "choice":
            # Hydra passes display=true as a bool and display=auto as a string: both fit.
            value = {"true": True, "false": False}.get(value.lower(), value)
        if not rule.accepts(value):
            raise ConfigError(f"{key}={_show(value)}: must be {rule.describe()}")
    _check_split(config)
    _check_age_range(config)


def _check_split(config: Mapping[str, Any]) -> None:
    val, test = _get(config, "data.split.val"), _get(config, "data.split.test")
    if _is_number(val) and _is_number(test) and val + test >= 1:
        raise ConfigError(
            f"data.split.val={val} data.split.test={test}: together they must be below 1, "
            f"so that some images are left to train on"
        )


def _check_age_range(config: Mapping[str, Any]) -> None:
    ages = _get(config, "data.age_range")
    if ages is _MISSING:
        return
    if not (
        isinstance(ages, Sequence)
        and not isinstance(ages, str)
        and len(ages) == 2
        and all(isinstance(a, int) and not isinstance(a, bool) for a in ages)
        and 0 <= ages[0] <= ages[1] <= 150
    ):
        raise ConfigError(
            f"data.age_range={_show(ages)}: must be [low, high], integers with 0 <= low <= high "
            f"<= 150"
        )


def validate_entry(config: Any, table: Mapping[str, Rule]) -> dict[str, Any]:
    """An entry script's composed Hydra config as plain types, validated against `table`."""
    from omegaconf import DictConfig, OmegaConf

    plain = (
        OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    )
    validate(plain, table)  # type: ignore[arg-type]
    return plain  # type: ignore[return-value]


# -- checkpoint metadata ---------------------------------------------------------------------

META_RULES = {
    "image_size": Int(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    "net.hidden_units": Int(1),
    "net.dropout": FRACTION,
    "net.backbone": Rule("str"),
    "calibration.gender_temperature": POSITIVE,
}


def validate_meta(meta: Any, source: str) -> dict[str, Any]:
    """The agegender metadata of a checkpoint or exported model, checked; extra keys are kept
    (newer writers may add some), keys inference needs must be present and well formed."""
    if not isinstance(meta, Mapping):
        raise MetadataError(
            f"{source}: malformed agegender metadata (a {type(meta).__name__}, not a mapping); "
            f"use a checkpoint written by train.py or a model written by export.py"
        )
    if not isinstance(meta.get("net"), Mapping):
        raise MetadataError(
            f"{source}: malformed agegender metadata: 'net' (the architecture) is missing or "
            f"not a mapping; use a checkpoint written by train.py"
        )
    for key, rule in META_RULES.items():
        value = _get(meta, key)
        if value is _MISSING:
            if key == "image_size":
                raise MetadataError(f"{source}: malformed agegender metadata: no image_size")
            continue  # the network's defaults apply
        if not rule.accepts(value):
            raise MetadataError(
                f"{source}: malformed agegender metadata: {key}={_show(value)} "
                f"(must be {rule.describe()})"
            )
    ages = meta.get("age_range")
    if ages is not None:
        try:
            _check_age_range({"data": {"age_range": ages}})
        except ConfigError as error:
            raise MetadataError(
                f"{source}: malformed agegender metadata: age_range={_show(ages)}"
            ) from error
    return dict(meta)
