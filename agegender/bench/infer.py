"""Inference benchmark: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8, images/s.

One randomly initialised network (speed does not depend on what the weights learned), 128 px
input, batch 1 (live video, one face) and batch 64 (evaluation), all measured in one run on
this machine, every engine on the same number of threads (one, as live.py runs PyTorch):
on a shared machine, multi-threaded PyTorch timings mostly measure the other processes.

The random network's BatchNorm statistics are first re-estimated on random images (see
`workload.calibrate_batchnorm`): untouched, activations shrink layer after layer into denormal
floats, which would be timed instead of the network and would give int8 calibration
meaningless ranges. Each engine is measured in alternating rounds and its best round kept:
on a shared machine interference only ever makes a run slower.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.bench.workload import best_of
from agegender.checkpoint import build_meta
from agegender.deployed import write_onnx
from agegender.export.metadata import metadata_props, write_onnx_metadata
from agegender.export.quantize import quantize_int8
from agegender.export.speed import images_per_second
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.model import AgeGenderNet
from agegender.scenes import random_images, random_net

IMAGE_SIZE = 128
QUICK_IMAGE_SIZE = 64
THREADS = 1
ROUNDS = 3
BATCHES = (1, 64)
QUICK_BATCHES = (1, 8)


def torch_eager(net: AgeGenderNet) -> Any:
    @torch.inference_mode()
    def run(batch: np.ndarray) -> Any:
        return net(torch.from_numpy(batch))

    return run


def write_models(net: AgeGenderNet, folder: Path, size: int) -> dict[str, Path]:
    """fp32 and static int8 ONNX files of `net`, with the metadata OnnxPredictor needs."""
    fp32, int8 = folder / "bench.onnx", folder / "bench.int8.onnx"
    write_onnx(net, fp32, size)
    write_onnx_metadata(fp32, metadata_props(build_meta(net.config, size, (1, 80), "bench")))
    quantize_int8(fp32, int8, random_images(32, size, seed=7), method="static")
    return {"onnxruntime fp32": fp32, "onnxruntime int8": int8}


def run(quick: bool = False) -> dict[str, Any]:
    batches = QUICK_BATCHES if quick else BATCHES
    seconds = 0.1 if quick else 1.0  # per round
    size = QUICK_IMAGE_SIZE if quick else IMAGE_SIZE
    net = random_net(size)
    rows: list[dict[str, Any]] = []
    threads_before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with tempfile.TemporaryDirectory(prefix="agegender-bench-") as folder:
            runners = {"torch eager fp32": torch_eager(net)}
            for name, path in write_models(net, Path(folder), size).items():
                runners[name] = OnnxPredictor(path, threads=THREADS).predict_batch
            for batch_size in batches:
                batch = random_images(batch_size, size, seed=batch_size)
                seconds_per_image = best_of(
                    ROUNDS,
                    {
                        name: lambda r=runner, b=batch: 1 / images_per_second(r, b, seconds)
                        for name, runner in runners.items()
                    },
                )
                for name, value in seconds_per_image.items():
                    rows.append({"backend": name, "batch": batch_size, "images_per_s": 1 / value})
    finally:
        torch.set_num_threads(threads_before)
    speed_of = {(r["backend"], r["batch"]): r["images_per_s"] for r in rows}
    ratios = {}
    for batch_size in batches:
        eager = speed_of[("torch eager fp32", batch_size)]
        for name in ("onnxruntime fp32", "onnxruntime int8"):
            ratios[f"{name} / torch eager, batch {batch_size}"] = (
                speed_of[(name, batch_size)] / eager
            )
    result = {
        "entry": "infer",
        "rows": rows,
        "ratios": ratios,
        "notes": (
            f"{size}x{size} RGB uint8 input, random MobileNetV2 weights with "
            f"BatchNorm statistics re-estimated; {THREADS} thread per engine; best of "
            f"{ROUNDS} alternating rounds; int8 = onnxruntime static QDQ, per-channel weights"
        ),
    }
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"\ninference benchmark ({result['notes']})")
    print(f"{'backend':<20} {'batch':>5} {'images/s':>10}")
    for row in result["rows"]:
        print(f"{row['backend']:<20} {row['batch']:>5} {row['images_per_s']:>10.1f}")
    for label, ratio in result["ratios"].items():
        print(f"  {label}: {ratio:.2f}x")


if __name__ == "__main__":
    run()
