"""OnnxPredictor: same answers as the torch Predictor, metadata from the file, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from agegender.checkpoint import CheckpointError
from agegender.errors import UserError
from agegender.export.parity import generated_images
from agegender.inference.backends import load_predictor
from agegender.inference.onnx_backend import OnnxModelError, OnnxPredictor
from agegender.inference.predictor import TorchPredictor


def test_onnx_predictor_matches_the_torch_predictor(
    varied_checkpoint: Path, varied_onnx: Path
) -> None:
    torch_predictor = TorchPredictor(varied_checkpoint)
    onnx_predictor = load_predictor(varied_onnx)
    assert isinstance(onnx_predictor, OnnxPredictor)
    assert onnx_predictor.backend == "onnxruntime"
    assert onnx_predictor.image_size == torch_predictor.image_size == 64
    assert onnx_predictor.meta["split_file"] == torch_predictor.meta["split_file"]
    rng = np.random.default_rng(1)
    # Crops of assorted sizes go through the one preprocessing path in both backends.
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((90, 70), (64, 64))]
    crops += list(generated_images(120, 3).transpose(0, 2, 3, 1))
    expected, got = torch_predictor.predict(crops), onnx_predictor.predict(crops)
    assert got.dtype == np.float32 and got.shape == (5, 2)
    # the answers differ far more than the tolerances below: the comparison can fail
    assert np.ptp(expected[:, 0]) > 20 * 0.05 and np.ptp(expected[:, 1]) > 100 * 1e-4
    np.testing.assert_allclose(got[:, 0], expected[:, 0], atol=0.05)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], atol=1e-4)
    assert onnx_predictor.predict([]).shape == (0, 2)


def test_a_missing_onnx_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(OnnxModelError, match="not found.*export.py"):
        load_predictor(tmp_path / "model.onnx")


def test_a_truncated_onnx_file_is_a_user_error(brief_onnx: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(brief_onnx.read_bytes()[:5000])
    with pytest.raises(OnnxModelError, match="not a loadable ONNX model") as caught:
        OnnxPredictor(broken)
    assert isinstance(caught.value, CheckpointError) and isinstance(caught.value, UserError)
    assert "\n" not in str(caught.value)


def test_an_onnx_model_that_is_not_an_agegender_export_is_refused(
    brief_onnx: Path, tmp_path: Path
) -> None:
    model = onnx.load(str(brief_onnx))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(OnnxModelError, match="not an agegender export"):
        OnnxPredictor(foreign)
