"""A training checkpoint (.ckpt) on onnxruntime, exported in memory when it is opened.

On a CPU, onnxruntime runs this network several times faster than torch's eager kernels
(`python -m agegender.bench live`), and exporting takes under a second, so live.py,
serve.py and eval.py give a checkpoint an exported file's speed without an export step,
writing nothing. The graph is the one export.py writes (`agegender.deployed.write_onnx`)
and is checked against torch on random pixels before it is used, with export.py's
tolerances.
"""

from __future__ import annotations

from pathlib import Path

from agegender.checkpoint import load_checkpoint
from agegender.deployed import ParityError, example_input, measure, onnx_bytes, torch_runner
from agegender.inference.onnx_backend import OnnxPredictor

PARITY_IMAGES = 8


def checkpoint_on_onnxruntime(path: str | Path, threads: int | None = None) -> OnnxPredictor:
    """The checkpoint at `path` exported in memory and opened on onnxruntime; raises
    ParityError when its answers differ from torch's beyond export.py's tolerances."""
    loaded = load_checkpoint(path)
    predictor = OnnxPredictor.in_memory(
        onnx_bytes(loaded.net, loaded.image_size), loaded.meta, str(path), threads
    )
    batch = example_input(loaded.image_size, PARITY_IMAGES).numpy()
    parity = measure(torch_runner(loaded.net), predictor.predict_batch, batch, "random pixels")
    if not parity.within():
        raise ParityError(f"{path}: onnxruntime's answers differ from torch's ({parity.line()})")
    return predictor
