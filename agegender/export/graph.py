"""The deployable graph: RGB uint8 NCHW in; `age` (years) and `p_female` (sigmoid applied) out.

Both targets (ONNX and TorchScript) are traced from `agegender.deployed.InferenceGraph`, the
module `TorchPredictor` runs, so the exported files answer exactly what it answers, and
callers never apply a sigmoid themselves.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from agegender.contract import INPUT_NAME, OUTPUT_NAMES
from agegender.deployed import InferenceGraph
from agegender.model import AgeGenderNet

MIN_OPSET = 17


def example_input(image_size: int, batch: int = 2) -> torch.Tensor:
    # Batch 2, not 1: a tracer must not be able to specialise the batch dimension away.
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 3, image_size, image_size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def write_onnx(net: AgeGenderNet, path: Path, image_size: int, opset: int = MIN_OPSET) -> None:
    """Trace `net` to ONNX at `path` with a dynamic batch dimension.

    Uses the TorchScript-based exporter (dynamo=False): it runs offline with what torch ships,
    while the dynamo exporter needs the separate `onnxscript` package.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be {MIN_OPSET} or newer, got {opset}")
    graph = InferenceGraph(net).eval()  # eval on the wrapper: export restores its mode after
    batch_axis = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(
            graph,
            (example_input(image_size),),
            str(path),
            dynamo=False,
            opset_version=int(opset),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: batch_axis for name in (INPUT_NAME, *OUTPUT_NAMES)},
            do_constant_folding=True,
        )


def write_torchscript(
    net: AgeGenderNet, path: Path, image_size: int, extra_files: dict[str, str]
) -> None:
    """Trace `net` to a TorchScript file; metadata goes into the archive's extra files."""
    graph = InferenceGraph(net).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notices, not user problems
        traced = torch.jit.trace(graph, (example_input(image_size),), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra_files)
