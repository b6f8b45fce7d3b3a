"""Choosing a backend: an export (.onnx) runs on onnxruntime; a training checkpoint (.ckpt)
on onnxruntime too when it runs on the CPU (exported in memory, checkpoint_onnx.py), else on
PyTorch. Kept apart from the backends so that none of them imports another."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agegender.checkpoint import CheckpointError, resolve_checkpoint
from agegender.errors import UserError
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.inference.predictor import Predictor, TorchPredictor

RUNTIMES = ("auto", "torch", "onnxruntime")


def check_device(device: str) -> None:
    """One line, before any loading, for a device torch does not know or this machine lacks."""
    import torch

    try:
        kind = torch.device(str(device)).type
    except RuntimeError as error:
        raise UserError(f"device={device}: not a torch device; use cpu, cuda or cuda:N") from error
    usable = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if kind in usable and not usable[kind]():
        raise UserError(f"device={device}: this machine has no usable {kind} device; use cpu")


def resolve_runtime(runtime: str, device: str) -> str:
    """`torch` or `onnxruntime` for a checkpoint: auto means onnxruntime on a CPU, torch on
    an accelerator (onnxruntime here has only its CPU provider)."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime={runtime}: choose runtime=auto, torch or onnxruntime")
    on_cpu = str(device).split(":")[0] == "cpu"
    if runtime == "auto":
        return "onnxruntime" if on_cpu else "torch"
    if runtime == "onnxruntime" and not on_cpu:
        raise UserError(
            f"runtime=onnxruntime runs on the CPU, but device={device}; "
            f"use runtime=torch (or auto) on an accelerator, or device=cpu"
        )
    return runtime


def load_predictor(
    path: str | Path, device: str = "cpu", threads: int | None = None, runtime: str = "auto"
) -> Predictor:
    """A Predictor for a training checkpoint (.ckpt) or an exported ONNX model (.onnx).

    `runtime` (auto, torch, onnxruntime) says what runs a checkpoint: auto is onnxruntime
    on the CPU and torch on an accelerator. `threads` caps onnxruntime's thread pool
    (torch's is set process-wide by the caller).
    """
    check_device(device)
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if runtime == "torch":
            raise UserError(
                f"runtime=torch: {path.name} is an exported model, which runs on onnxruntime; "
                f"pass the training checkpoint (.ckpt) or leave runtime=auto"
            )
        return OnnxPredictor(path, threads=threads)
    if resolve_runtime(runtime, device) == "onnxruntime":
        from agegender.deployed import ParityError
        from agegender.inference.checkpoint_onnx import checkpoint_on_onnxruntime

        try:
            return checkpoint_on_onnxruntime(path, threads)
        except ParityError as error:
            print(f"warning: {error}; running it on torch instead", file=sys.stderr)
    return TorchPredictor(path, device=device)


def open_predictor(
    spec: Any,
    outputs_dir: str | Path = "outputs",
    device: str = "cpu",
    threads: int | None = None,
    runtime: str = "auto",
) -> Predictor:
    """The Predictor for ckpt=PATH|latest (see `load_predictor` for `runtime`)."""
    path = resolve_checkpoint(None if spec is None else str(spec), outputs_dir)
    if not path.is_file():
        what = "a folder, not a model file" if path.is_dir() else "no such file"
        raise CheckpointError(
            f"ckpt={path}: {what}; pass a .ckpt written by train.py, an .onnx written "
            f"by export.py, or ckpt=latest"
        )
    return load_predictor(path, device=device, threads=threads, runtime=runtime)
