"""OnnxPredictor: an exported model (.onnx) behind the same Predictor interface as a checkpoint.

The exported graph takes RGB uint8 NCHW (normalisation is inside, as in the torch network) and
returns `age` (years) and `p_female` (sigmoid applied). What inference needs (image size, age
range, label meaning) travels in the file's metadata_props, written by `agegender.export`, so
`live.py ckpt=model.onnx` needs no other flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from agegender.checkpoint import CheckpointError
from agegender.contract import INPUT_NAME, INPUT_TYPE, META_PROP, OUTPUT_NAMES
from agegender.inference.predictor import Predictor
from agegender.validation import validate_meta


class OnnxModelError(CheckpointError):
    """An .onnx file that is missing, unreadable or not an agegender export."""


def session_options(threads: int | None = None) -> Any:
    """CPU-friendly onnxruntime settings: full graph optimisation, quiet logs, sequential ops."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one small CNN: no branch overlap
    options.log_severity_level = 3  # errors only; ORT warns about harmless initializer names
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for `path`, with a one-line error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(
            f"ONNX model not found: {path}. Export one first "
            f"(python export.py ckpt=latest) or pass ckpt=PATH of an existing .onnx"
        )
    try:
        return ort.InferenceSession(
            str(path), session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OnnxModelError(
            f"{path}: not a loadable ONNX model ({first[:200]}). Is the file complete? "
            f"Re-export it with python export.py ckpt=PATH"
        ) from error


def read_meta(session: Any, path: str | Path) -> dict[str, Any]:
    """The agegender contract stored in the model's metadata_props."""
    props = session.get_modelmeta().custom_metadata_map
    if META_PROP not in props:
        raise OnnxModelError(
            f"{path}: an ONNX model, but not an agegender export (no '{META_PROP}' metadata); "
            f"export one with python export.py ckpt=PATH"
        )
    try:
        meta = json.loads(props[META_PROP])
    except ValueError as error:
        raise OnnxModelError(f"{path}: damaged '{META_PROP}' metadata ({error})") from error
    return validate_meta(meta, str(path))


class OnnxPredictor(Predictor):
    """Runs an exported agegender model on onnxruntime's CPU provider."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        session = open_session(self.path, threads)
        self._attach(session, read_meta(session, self.path))

    @classmethod
    def in_memory(
        cls, model: bytes, meta: dict[str, Any], name: str, threads: int | None = None
    ) -> OnnxPredictor:
        """A predictor for a graph held in memory (a checkpoint exported when opened), whose
        contract `meta` the caller already holds; `name` stands for it in messages."""
        predictor = cls.__new__(cls)
        predictor.path = Path(name)
        session = ort.InferenceSession(
            model, session_options(threads), providers=["CPUExecutionProvider"]
        )
        predictor._attach(session, meta)
        return predictor

    def _attach(self, session: Any, meta: dict[str, Any]) -> None:
        self.session = session
        self.meta = meta
        self.image_size = int(self.meta["image_size"])
        inputs = [item.name for item in self.session.get_inputs()]
        outputs = [item.name for item in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise OnnxModelError(
                f"{self.path}: expected input '{INPUT_NAME}' and outputs {list(OUTPUT_NAMES)}, "
                f"found {inputs} -> {outputs}; re-export with python export.py"
            )
        image = self.session.get_inputs()[0]
        if image.type != INPUT_TYPE or len(image.shape) != 4:
            raise OnnxModelError(
                f"{self.path}: input '{INPUT_NAME}' is {image.type} {image.shape}, expected "
                f"{INPUT_TYPE} [N, 3, S, S] (RGB 0..255); re-export with python export.py"
            )

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(batch, dtype=np.uint8)
        age, p_female = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return np.stack([age, p_female], axis=1).astype(np.float32, copy=False)
