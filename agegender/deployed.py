"""The deployed graph: RGB uint8 NCHW in; age (years) and P(female) out.

Export traces exactly this module, and `TorchPredictor`, the parity reference and the
training sample grid run it too, so the step from the network's raw heads to what a user is
shown (`AgeGenderNet.predict`: clamped age, calibrated sigmoid) is taken in one place and
every backend answers the same thing. Its ONNX trace (`write_onnx`: export.py's files, and a
checkpoint opened on onnxruntime in memory) and the comparison of any copy of it with the
network (`measure`, the parity tolerances) live here too, below both export and inference.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from agegender.contract import INPUT_NAME, OUTPUT_NAMES
from agegender.errors import UserError
from agegender.model import AgeGenderNet

MIN_OPSET = 17
AGE_TOLERANCE = 0.05  # years
P_FEMALE_TOLERANCE = 1e-4

Runner = Callable[[np.ndarray], np.ndarray]  # uint8 NCHW -> float [N, 2] (age, p_female)


class InferenceGraph(nn.Module):
    """AgeGenderNet's `predict` (ages clamped, calibrated P(female)) as a traceable module:
    what a deployed model returns."""

    def __init__(self, net: AgeGenderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.predict(image)


@torch.inference_mode()
def predict_tensor(net: AgeGenderNet | InferenceGraph, images: torch.Tensor) -> torch.Tensor:
    """[N, 2] float: columns age (years) and P(female), from uint8 [N, 3, S, S] images."""
    graph = net if isinstance(net, InferenceGraph) else InferenceGraph(net)
    age, p_female = graph(images)
    return torch.stack([age, p_female], dim=1)


def example_input(image_size: int, batch: int = 2) -> torch.Tensor:
    # Batch 2, not 1: a tracer must not be able to specialise the batch dimension away.
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 3, image_size, image_size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def write_onnx(
    net: AgeGenderNet, path: Path | io.BytesIO, image_size: int, opset: int = MIN_OPSET
) -> None:
    """Trace `net` to ONNX at `path` (a file, or a buffer in memory) with a dynamic batch
    dimension.

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
            path if isinstance(path, io.BytesIO) else str(path),
            dynamo=False,
            opset_version=int(opset),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: batch_axis for name in (INPUT_NAME, *OUTPUT_NAMES)},
            do_constant_folding=True,
        )


def onnx_bytes(net: AgeGenderNet, image_size: int) -> bytes:
    """The ONNX graph `write_onnx` writes, in memory (no metadata: the caller holds it)."""
    buffer = io.BytesIO()
    write_onnx(net, buffer, image_size)
    return buffer.getvalue()


class ParityError(UserError):
    """A copy of the graph (an export) answers differently from the network beyond the
    tolerances."""


@dataclass
class Parity:
    age_max_diff: float
    p_female_max_diff: float
    count: int
    source: str

    def line(self) -> str:
        return (
            f"max |diff| age {self.age_max_diff:.2e} years, p_female "
            f"{self.p_female_max_diff:.2e} ({self.count} images: {self.source})"
        )

    def within(
        self, age_tolerance: float = AGE_TOLERANCE, p_tolerance: float = P_FEMALE_TOLERANCE
    ) -> bool:
        return self.age_max_diff <= age_tolerance and self.p_female_max_diff <= p_tolerance


def torch_runner(net: AgeGenderNet) -> Runner:
    """The reference: the eager network's `predict` in eval mode (the graph export traces)."""
    graph = InferenceGraph(net).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        return predict_tensor(graph, torch.from_numpy(np.ascontiguousarray(batch))).double().numpy()

    return run


def measure(reference: Runner, candidate: Runner, batch: np.ndarray, source: str) -> Parity:
    """Largest differences over the whole batch and over its first image alone (which also
    proves the batch dimension is really dynamic)."""
    diffs = []
    for images in (batch, batch[:1]):
        diffs.append(np.abs(reference(images) - np.asarray(candidate(images), dtype=np.float64)))
    stacked = np.concatenate(diffs)
    return Parity(float(stacked[:, 0].max()), float(stacked[:, 1].max()), len(batch), source)
