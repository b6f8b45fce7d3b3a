"""export.py: ONNX/TorchScript files that answer like PyTorch, carry metadata, or fail cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agegender import __version__
from agegender.checkpoint import LABELS, load_checkpoint
from agegender.deployed import torch_runner
from agegender.errors import UserError
from agegender.export import ParityError, export
from agegender.export.metadata import onnx_opset, read_onnx_metadata
from agegender.export.parity import parity_batch
from agegender.export.run import TORCHSCRIPT_META, torchscript_runner
from agegender.inference.onnx_backend import OnnxPredictor
from tests.conftest import run_entry


def test_export_cli_proves_parity_and_reports_int8(brief_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "age.onnx"
    result = run_entry(
        "export.py",
        f"ckpt={brief_run / 'checkpoints' / 'best.ckpt'}",
        f"out={out}",
        "quantize=int8",
        "speed_seconds=0.05",
        f"data.cache_dir={brief_run.parent.parent / 'cache'}",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert out.is_file() and (tmp_path / "deploy" / "age.int8.onnx").is_file()
    assert "parity with PyTorch: max |diff| age" in result.stdout
    assert "faces from" in result.stdout  # real faces from the run's split, not noise
    assert "batch   1: fp32" in result.stdout and "int8" in result.stdout
    assert "age MAE" in result.stdout and "on val split" in result.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["age.int8.onnx", "age.onnx"]


def test_exported_onnx_is_within_the_parity_bounds_at_any_batch_size(
    varied_checkpoint: Path, varied_onnx: Path
) -> None:
    loaded = load_checkpoint(varied_checkpoint)
    batch, source = parity_batch(loaded.meta, 24)
    assert "faces from" in source and len(batch) == 24
    expected = torch_runner(loaded.net)(batch)
    predictor = OnnxPredictor(varied_onnx)
    for size in (1, 7, 24):  # dynamic batch dimension
        got = predictor.predict_batch(batch[:size])
        assert np.abs(got[:, 0] - expected[:size, 0]).max() <= 0.05
        assert np.abs(got[:, 1] - expected[:size, 1]).max() <= 1e-4
    # far more spread than the tolerances: a graph that ignored its input would fail
    assert np.ptp(expected[:, 0]) > 20 * 0.05 and np.ptp(expected[:, 1]) > 100 * 1e-4


def test_exported_metadata_reads_back(brief_run: Path, brief_onnx: Path) -> None:
    checkpoint = brief_run / "checkpoints" / "best.ckpt"
    props = read_onnx_metadata(brief_onnx)
    assert props["image_size"] == "64"
    assert json.loads(props["age_range"]) == [1, 80]
    assert json.loads(props["labels"]) == LABELS
    assert props["backbone"] == "mobilenet_v2"
    assert props["version"] == __version__
    assert props["checkpoint"] == str(checkpoint.resolve())
    assert len(props["checkpoint_sha256"]) == 64
    meta = json.loads(props["agegender"])
    assert meta["split_file"] == str(brief_run / "split.json")
    assert onnx_opset(brief_onnx) >= 17
    session = OnnxPredictor(brief_onnx).session
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic: dynamic batch
    assert [o.name for o in session.get_outputs()] == ["age", "p_female"]


def test_failed_parity_leaves_no_model_behind(brief_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    with pytest.raises(ParityError, match="does not match PyTorch.*Nothing was written"):
        export(brief_run / "checkpoints" / "best.ckpt", out=out, age_tolerance=0.0, p_tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_matches_and_carries_metadata(
    varied_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = varied_checkpoint
    result = export(checkpoint, out=tmp_path, fmt="torchscript")
    assert result.path == tmp_path / "model.torchscript.pt"
    assert "faces from" in result.parity.source
    extra = {TORCHSCRIPT_META: ""}
    torch.jit.load(str(result.path), _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_META])["image_size"] == 64
    loaded = load_checkpoint(checkpoint)
    batch, _ = parity_batch(loaded.meta, 12)
    expected = torch_runner(loaded.net)(batch)
    np.testing.assert_allclose(torchscript_runner(result.path)(batch), expected, atol=1e-5)
    assert np.ptp(expected[:, 0]) > 1.0 and np.ptp(expected[:, 1]) > 1e-2  # varied answers
    torch_only = torchscript_runner(result.path)(np.zeros_like(batch))
    assert np.abs(torch_only - expected).max() > 1.0  # the archive really looks at its input


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"fmt": "tflite"}, "format=tflite"),
        ({"fmt": "torchscript", "quantize": "int8"}, "quantize=int8"),
        ({"opset": 13}, "opset=13"),
    ],
)
def test_bad_options_are_user_errors(
    arguments: dict, message: str, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=message):
        export(untrained_checkpoint, out=tmp_path, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_checkpoint_is_one_clear_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    result = run_entry("export.py", f"ckpt={garbage}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {garbage}: not a PyTorch file")
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.ckpt"]


def test_an_onnx_export_passed_as_the_checkpoint_is_named_as_such(brief_onnx: Path) -> None:
    result = run_entry("export.py", f"ckpt={brief_onnx}")
    assert result.returncode == 2
    assert "an exported ONNX model, not a training checkpoint" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_the_default_export_goes_to_the_run_folder_as_the_demo_puts_it() -> None:
    from agegender.export.run import output_path

    in_run = Path("outputs/frozen/2026-01-01_00-00-00/checkpoints/best.ckpt")
    assert output_path(in_run, None, "onnx") == Path(
        "outputs/frozen/2026-01-01_00-00-00/model.onnx"
    )
    loose = Path("models/best.ckpt")
    assert output_path(loose, None, "torchscript") == Path("models/model.torchscript.pt")
