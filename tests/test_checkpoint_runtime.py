"""A checkpoint on onnxruntime (runtime=auto on a CPU): exported in memory, answering as torch
does, checked before use, and torch wherever onnxruntime cannot stand in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agegender.checkpoint import load_checkpoint
from agegender.deployed import onnx_bytes
from agegender.errors import UserError
from agegender.export.parity import generated_images
from agegender.inference import checkpoint_onnx
from agegender.inference.backends import load_predictor, resolve_runtime
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.inference.predictor import TorchPredictor


def test_a_checkpoint_on_the_cpu_runs_on_onnxruntime_with_torchs_answers(
    varied_checkpoint: Path,
) -> None:
    before = sorted(varied_checkpoint.parent.iterdir())
    predictor = load_predictor(varied_checkpoint)  # runtime=auto, device=cpu
    assert isinstance(predictor, OnnxPredictor) and predictor.backend == "onnxruntime"
    reference = TorchPredictor(varied_checkpoint)
    assert predictor.meta == reference.meta and predictor.image_size == 64
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((80, 60), (64, 64))]
    crops += list(generated_images(100, 4, seed=5).transpose(0, 2, 3, 1))
    expected, got = reference.predict(crops, flip=True), predictor.predict(crops, flip=True)
    # the answers vary far more than the tolerances: a graph ignoring its input would fail
    assert np.ptp(expected[:, 0]) > 20 * 0.05 and np.ptp(expected[:, 1]) > 100 * 1e-4
    np.testing.assert_allclose(got[:, 0], expected[:, 0], atol=0.05)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], atol=1e-4)
    assert sorted(varied_checkpoint.parent.iterdir()) == before  # exported in memory only


def test_runtime_torch_keeps_a_checkpoint_on_torch(varied_checkpoint: Path) -> None:
    assert isinstance(load_predictor(varied_checkpoint, runtime="torch"), TorchPredictor)


def test_auto_means_onnxruntime_on_the_cpu_and_torch_on_an_accelerator() -> None:
    assert resolve_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("auto", "cuda:1") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    assert resolve_runtime("onnxruntime", "cpu") == "onnxruntime"
    with pytest.raises(UserError, match="runtime=onnxruntime runs on the CPU.*device=cuda"):
        resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(UserError, match="runtime=tensorrt: choose"):
        resolve_runtime("tensorrt", "cpu")


def test_an_export_cannot_run_on_torch(varied_onnx: Path) -> None:
    with pytest.raises(UserError, match="runtime=torch.*exported model.*\\.ckpt"):
        load_predictor(varied_onnx, runtime="torch")
    assert isinstance(load_predictor(varied_onnx, runtime="onnxruntime"), OnnxPredictor)


def test_a_graph_that_answers_differently_falls_back_to_torch(
    varied_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def wrong_graph(net: torch.nn.Module, image_size: int) -> bytes:
        other = load_checkpoint(varied_checkpoint).net
        with torch.no_grad():
            other.gender_head.bias.add_(2.0)  # a graph leaning female
        return onnx_bytes(other, image_size)

    monkeypatch.setattr(checkpoint_onnx, "onnx_bytes", wrong_graph)
    predictor = load_predictor(varied_checkpoint)
    assert isinstance(predictor, TorchPredictor)
    warning = capsys.readouterr().err
    assert "onnxruntime's answers differ from torch's" in warning and "on torch" in warning
    assert warning.count("\n") == 1
