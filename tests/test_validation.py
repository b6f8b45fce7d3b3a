"""Every wrong config value or malformed metadata is one line naming the key, value and range."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from agegender.checkpoint import CheckpointError, load_checkpoint
from agegender.configs import compose_config
from agegender.data.utkface import MalformedNameError, parse_name
from agegender.errors import UserError
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.validation import (
    EVAL,
    EXPORT,
    LIVE,
    SERVE,
    TRAIN,
    ConfigError,
    MetadataError,
    Rule,
    validate,
    validate_meta,
)
from tests.conftest import run_entry

TABLES = {"train": TRAIN, "live": LIVE, "export": EXPORT, "eval": EVAL, "serve": SERVE}


def composed(name: str, *overrides: str) -> dict:
    cfg = compose_config(name, *overrides)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", TABLES)
def test_the_shipped_defaults_are_valid(name: str) -> None:
    validate(composed(name), TABLES[name])


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("train", ["data.batch_size=abc"], "data.batch_size=abc: must be an integer >= 1"),
        ("train", ["data.image_size=-1"], "data.image_size=-1: must be an integer in [32, 1024]"),
        ("train", ["data.image_size=7"], "data.image_size=7: must be an integer in [32, 1024]"),
        ("train", ["optim.lr=-1"], "optim.lr=-1: must be a number > 0"),
        ("train", ["optim.lr=abc"], "optim.lr=abc: must be a number > 0"),
        ("train", ["finetune.lr=-1", "phase=finetune"], "finetune.lr=-1: must be a number > 0"),
        (
            "train",
            ["finetune.trainable_from=19", "phase=finetune"],
            "finetune.trainable_from=19: must be an integer in [0, 18]",
        ),
        (
            "train",
            ["finetune.hue=0.6", "phase=finetune"],
            "finetune.hue=0.6: must be a number in [0, 0.5]",
        ),
        (
            "train",
            ["data.augment.color_jitter.hue=-0.1", "phase=finetune"],
            "data.augment.color_jitter.hue=-0.1: must be a number in [0, 0.5]",
        ),
        ("train", ["data.split.val=0.9", "data.split.test=0.9"], "together they must be below 1"),
        ("train", ["data.split.val=1.5"], "data.split.val=1.5: must be a number in [0, 1)"),
        ("train", ["loss.age=l3"], "loss.age=l3: must be one of l1, mse, huber"),
        (
            "train",
            ["model.frozen_runtime=tensorrt"],
            "model.frozen_runtime=tensorrt: must be one of torch, onnxruntime",
        ),
        ("train", ["data.age_range=[80,1]"], "data.age_range=[80, 1]: must be [low, high]"),
        ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= 1"),
        ("live", ["iou_threshold=abc"], "iou_threshold=abc: must be a number in [0, 1]"),
        ("live", ["max_frames=-3"], "max_frames=-3: must be an integer >= 1 (or null)"),
        ("live", ["smoothing=1"], "smoothing=1: must be a number in [0, 1)"),
        ("live", ["display=maybe"], "display=maybe: must be one of auto, true, false"),
        ("live", ["stall_timeout=0"], "stall_timeout=0: must be a number > 0"),
        ("eval", ["batch_size=0"], "batch_size=0: must be an integer >= 1"),
        ("eval", ["tta=mirror"], "tta=mirror: must be one of none, flip (or null)"),
        ("eval", ["overlap=maybe"], "overlap=maybe: must be one of skip, keep"),
        ("eval", ["match_source=sometimes"], "match_source=sometimes: must be true or false"),
        ("live", ["match_source=2"], "match_source=2: must be true or false"),
        ("live", ["detector.width=abc"], "detector.width=abc: must be an integer >= 16"),
        ("serve", ["port=99999"], "port=99999: must be an integer in [0, 65535]"),
        ("serve", ["workers=abc"], "workers=abc: must be an integer >= 1"),
        ("serve", ["max_missed_frames=-1"], "max_missed_frames=-1: must be an integer >= 0"),
        (
            "serve",
            ["log_level=bogus"],
            "log_level=bogus: must be one of critical, error, warning, info, debug, trace",
        ),
        ("serve", ["tta=bogus"], "tta=bogus: must be one of none, flip (or null)"),
        ("export", ["opset=abc"], "opset=abc: must be an integer in [17, 30]"),
        ("export", ["opset=12"], "opset=12: must be an integer in [17, 30]"),
        ("export", ["parity.images=0"], "parity.images=0: must be an integer in [1, 4096]"),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_range(
    name: str, overrides: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        validate(composed(name, *overrides), TABLES[name])
    assert str(error.value).startswith(overrides[0].split("=")[0] + "=")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_unknown_keys_and_missing_optional_keys_are_tolerated() -> None:
    config = composed("live")
    config["align"] = {"enabled": True, "new_option": 3}  # keys another version may add
    del config["hold"]
    validate(config, LIVE)


@pytest.mark.parametrize(
    ("script", "override", "key"),
    [
        ("train.py", "data.batch_size=abc", "data.batch_size=abc"),
        ("live.py", "max_frames=-3", "max_frames=-3"),
        ("export.py", "opset=abc", "opset=abc"),
        ("eval.py", "batch_size=0", "batch_size=0"),
        ("serve.py", "port=abc", "port=abc"),
    ],
)
def test_entry_points_print_one_line_and_exit_2(
    script: str, override: str, key: str, tmp_path: Path
) -> None:
    result = run_entry(script, override, f"outputs_dir={tmp_path}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "must be" in lines[0], result.stderr
    # a refused command leaves no file behind (train.py's Hydra run folder included)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# -- fuzz ------------------------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    # training in this process flushes denormals to zero, so hypothesis cannot make them
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.text(max_size=8),
    st.lists(st.integers(-5, 200), max_size=3),
)


def _fits(rule: Rule, value: object) -> bool:
    """An independent reading of a rule, to compare `validate` against."""
    if value is None:
        return rule.optional
    if rule.kind == "bool":
        return isinstance(value, bool)
    if rule.kind == "choice":
        return any(value == c and type(value) is type(c) for c in rule.choices)
    if rule.kind == "str":
        return isinstance(value, str) and bool(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if rule.kind == "int" and not isinstance(value, int):
        return False
    if value != value or value in (float("inf"), float("-inf")):
        return False
    below = rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low))
    above = rule.high is not None and (value > rule.high or (rule.high_open and value == rule.high))
    return not (below or above)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.sampled_from(sorted(TABLES)), data=st.data(), value=ANY_VALUE, key_index=st.integers()
)
def test_fuzzed_config_values_pass_or_give_one_clear_line(
    table: str, data: st.DataObject, value: object, key_index: int
) -> None:
    rules = TABLES[table]
    key = sorted(rules)[key_index % len(rules)]
    config: dict = {}
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    if isinstance(value, str) and rules[key].kind == "choice":
        value = {"true": True, "false": False}.get(value.lower(), value)
    try:
        validate(config, rules)
    except ConfigError as error:
        message = str(error)
        assert message.startswith(f"{key}=") and "must be" in message and "\n" not in message
        assert not _fits(rules[key], value)
    else:
        assert _fits(rules[key], value)


NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d{1,20})\.(jpe?g|png)(\.chip\.(jpe?g|png))?$", re.I)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda age, gender, race, stamp, ext, chip: (
                f"{age}_{gender}_{race}_{stamp}.{ext}{chip}"
            ),
            st.integers(-5, 1200),
            st.integers(-1, 3),
            st.integers(-1, 6),
            st.integers(0, 10**22),
            st.sampled_from(["jpg", "JPG", "jpeg", "png", "gif", "jpg.chip"]),
            st.sampled_from(["", ".chip.jpg", ".chip.png", ".chip", ".jpg"]),
        ),
    )
)
def test_fuzzed_file_names_parse_exactly_when_they_follow_the_scheme(name: str) -> None:
    match = NAME.match(name)
    try:
        label = parse_name(name)
    except MalformedNameError:
        assert match is None, name
    else:
        assert match is not None, name
        assert (label.age, label.gender, label.race) == tuple(int(match[i]) for i in (1, 2, 3))
        assert 0 <= label.age <= 999 and label.gender in (0, 1) and 0 <= label.race <= 4


# -- checkpoint and model metadata -----------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({}, "'net' (the architecture) is missing"),
        ("a string", "a str, not a mapping"),
        ({"net": {}, "image_size": -5}, "image_size=-5 (must be an integer in [32, 1024])"),
        ({"net": {}, "image_size": "big"}, "image_size=big"),
        ({"net": {}}, "no image_size"),
        ({"net": {"hidden_units": 0}, "image_size": 64}, "net.hidden_units=0"),
        ({"net": {"backbone": "resnet"}, "image_size": 64}, "unknown backbone 'resnet'"),
        ({"net": {}, "image_size": 64, "age_range": "young"}, "age_range=young"),
    ],
)
def test_malformed_checkpoint_metadata_is_one_line(
    meta: object, expected: str, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    raw = torch.load(untrained_checkpoint, weights_only=True)
    raw["agegender"] = meta
    path = tmp_path / "bad.ckpt"
    torch.save(raw, path)
    with pytest.raises(UserError) as error:
        load_checkpoint(path)
    assert expected in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_extra_metadata_keys_are_tolerated(untrained_checkpoint: Path, tmp_path: Path) -> None:
    raw = torch.load(untrained_checkpoint, weights_only=True)
    raw["agegender"]["future_key"] = {"align": "eyes", "margin": 0.4}
    raw["agegender"]["net"]["future_option"] = 1
    path = tmp_path / "newer.ckpt"
    torch.save(raw, path)
    assert load_checkpoint(path).meta["future_key"]["align"] == "eyes"
    assert validate_meta({"net": {}, "image_size": 64}, "x")["image_size"] == 64


def test_a_pickled_object_is_refused_without_torchs_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "objects.ckpt"
    torch.save({"agegender": {"net": {}}, "state_dict": {}, "extra": Path("x")}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "weights_only=False" not in str(error.value) and "\n" not in str(error.value)


def test_an_onnx_model_with_a_float_input_is_one_line(brief_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(brief_onnx))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    cast = onnx.helper.make_node("Cast", ["image_f"], ["image_u8"], to=onnx.TensorProto.UINT8)
    for node in model.graph.node:  # route the float input through a cast so the graph loads
        node.input[:] = ["image_u8" if name == "image" else name for name in node.input]
    cast.input[0] = "image"
    model.graph.node.insert(0, cast)
    path = tmp_path / "float.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError) as error:
        OnnxPredictor(path)
    assert "tensor(float)" in str(error.value) and "tensor(uint8)" in str(error.value)

    bad_meta = onnx.load(str(brief_onnx))
    for prop in bad_meta.metadata_props:
        if prop.key == "agegender":
            prop.value = json.dumps({"net": {}, "image_size": -5})
    path = tmp_path / "badmeta.onnx"
    onnx.save(bad_meta, str(path))
    with pytest.raises(MetadataError, match="image_size=-5"):
        OnnxPredictor(path)
    assert np.isfinite(
        OnnxPredictor(brief_onnx).predict_batch(np.zeros((1, 3, 64, 64), np.uint8))
    ).all()


def test_a_device_this_machine_lacks_or_torch_does_not_know_is_one_line(
    monkeypatch: pytest.MonkeyPatch, untrained_checkpoint: Path
) -> None:
    from agegender.inference.backends import load_predictor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="device=cuda: this machine has no usable cuda device"):
        load_predictor(untrained_checkpoint, device="cuda")
    with pytest.raises(UserError, match="device=gpu: not a torch device"):
        load_predictor(untrained_checkpoint, device="gpu")


@pytest.mark.parametrize(
    ("script", "override"), [("live.py", "detector=bogus"), ("train.py", "phase=bogus")]
)
def test_an_unknown_config_group_option_is_one_line(
    script: str, override: str, tmp_path: Path
) -> None:
    result = run_entry(script, override, f"outputs_dir={tmp_path}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{override}: unknown; choose one of" in lines[0], result.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
