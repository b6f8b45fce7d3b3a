"""The TorchScript target: the deployable graph traced to a TorchScript archive.

Both targets are traced from `agegender.deployed.InferenceGraph`, the module `TorchPredictor`
runs, so the exported files answer exactly what it answers, and callers never apply a sigmoid
themselves; the ONNX trace is `agegender.deployed.write_onnx`, which inference uses too (a
checkpoint opened on onnxruntime).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from agegender.deployed import InferenceGraph, example_input
from agegender.model import AgeGenderNet


def write_torchscript(
    net: AgeGenderNet, path: Path, image_size: int, extra_files: dict[str, str]
) -> None:
    """Trace `net` to a TorchScript file; metadata goes into the archive's extra files."""
    graph = InferenceGraph(net).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notices, not user problems
        traced = torch.jit.trace(graph, (example_input(image_size),), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra_files)
