"""The frozen backbone blocks' forward pass on onnxruntime, for training on a CPU.

While the network trains, its frozen blocks (`features[:frozen_blocks]`, BatchNorm in eval
mode, no gradients) compute the same function on every batch: a pure inference job. On a
CPU, onnxruntime runs these early, high-resolution MobileNetV2 blocks several times faster
than torch's eager kernels (docs/training_at_scale.md), and the blocks that train take its
output as they would torch's. The graph is exported from the blocks themselves, and exported
again whenever their weights change (a checkpoint loaded into them), so it always computes
what the torch blocks would.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

RUNTIMES = ("torch", "onnxruntime")
_OPSET = 17


class OnnxFrozenBlocks:
    """Runs `net.features[:stop]` on onnxruntime (the input normalised by `net.normalize`).

    Not an nn.Module: it holds no weights of its own (the state dict stays the network's),
    and its session is dropped when the network is copied or pickled and rebuilt on use.
    """

    def __init__(self) -> None:
        self._session: Any = None
        self._fingerprint: tuple | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_session": None, "_fingerprint": None}

    def __call__(self, net: nn.Module, stop: int, images: torch.Tensor) -> torch.Tensor:
        """features[:stop](normalize(images)) for CPU images [B, 3, H, W], any dtype."""
        fingerprint = _fingerprint(net, stop)
        if self._session is None or fingerprint != self._fingerprint:
            self._session = _session(net, stop, torch.get_num_threads())
            self._fingerprint = fingerprint
        batch = np.ascontiguousarray(net.normalize(images.detach()).float().numpy())
        hidden = torch.from_numpy(self._session.run(None, {"images": batch})[0])
        weight = next(net.features[stop:].parameters(), None)
        if weight is not None and weight.dim() == 4 and _is_channels_last(weight):
            hidden = hidden.contiguous(memory_format=torch.channels_last)
        return hidden


def usable(net: nn.Module, stop: int, images: torch.Tensor) -> bool:
    """Whether these blocks can run on onnxruntime for this batch: CPU tensors, at least one
    frozen block, none of them learning, and not inside an export or trace of the net."""
    if stop <= 0 or images.device.type != "cpu":
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    return not any(p.requires_grad for p in net.features[:stop].parameters())


def _is_channels_last(weight: torch.Tensor) -> bool:
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def _fingerprint(net: nn.Module, stop: int) -> tuple:
    """Changes whenever a tensor the blocks compute with is replaced or written in place."""
    tensors = [*net.features[:stop].parameters(), *net.features[:stop].buffers()]
    # inference-mode tensors keep no version counter: for them only their storage counts
    return (stop, *((t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors))


def _session(net: nn.Module, stop: int, threads: int) -> Any:
    """An onnxruntime session for the blocks as they are now (exported in eval mode)."""
    import onnxruntime as ort

    # a copy, so that the exporter's switching of training modes never touches the network
    blocks = copy.deepcopy(net.features[:stop]).eval()
    # an example of its own generator: building the session must not move training's RNG
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, 64, 64, generator=generator).to(net.pixel_mean.device)
    buffer = io.BytesIO()
    # fp32 even inside a bf16 autocast step: onnxruntime's CPU convolutions take no bf16
    with warnings.catch_warnings(), torch.no_grad(), torch.autocast("cpu", enabled=False):
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            blocks,
            (example,),
            buffer,
            dynamo=False,
            opset_version=_OPSET,
            input_names=["images"],
            output_names=["hidden"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
            do_constant_folding=True,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    # idle threads must sleep, not spin: torch's own threads run the next layers on these cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
