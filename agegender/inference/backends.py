"""Choosing a backend: a training checkpoint (.ckpt) runs on PyTorch, an export (.onnx) on
onnxruntime. Kept apart from both backends so that neither imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agegender.checkpoint import CheckpointError, resolve_checkpoint
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.inference.predictor import Predictor, TorchPredictor


def load_predictor(path: str | Path, device: str = "cpu", threads: int | None = None) -> Predictor:
    """A Predictor for a training checkpoint (.ckpt) or an exported ONNX model (.onnx).

    `threads` caps onnxruntime's thread pool (torch's is set process-wide by the caller).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path, threads=threads)
    return TorchPredictor(path, device=device)


def open_predictor(
    spec: Any, outputs_dir: str | Path = "outputs", device: str = "cpu", threads: int | None = None
) -> Predictor:
    """The Predictor for ckpt=PATH|latest: a .ckpt on torch, an .onnx on onnxruntime."""
    path = resolve_checkpoint(None if spec is None else str(spec), outputs_dir)
    if not path.is_file():
        raise CheckpointError(
            f"ckpt={path}: no such file; pass a .ckpt written by train.py, an .onnx written "
            f"by export.py, or ckpt=latest"
        )
    return load_predictor(path, device=device, threads=threads)
