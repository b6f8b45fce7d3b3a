"""What the training benchmarks (data, frozen, train) share: generated faces, the real config,
BatchNorm calibration, thread count, best-of timing and a plain table printer.

Timings on a shared machine are noisy, so each pair is measured in alternating rounds and the
best round of each side is kept: interference only ever makes a run slower. The compute runs
on THREADS intra-op threads (see `torch_threads`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

import agegender
from agegender.data.synthetic import generate_dataset
from agegender.model import AgeGenderNet

CONF_DIR = Path(agegender.__file__).resolve().parents[1] / "conf"
THREADS = 1  # intra-op threads for the training benchmarks, as for inference and live


def train_config(*overrides: str) -> DictConfig:
    """The config train.py would compose with these overrides."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"{CONF_DIR}/train.yaml not found: run the benchmarks from a source checkout"
        )
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def faces(folder: Path, count: int) -> Path:
    """UTKFace-format generated faces at UTKFace's 200 px (what a loader decodes)."""
    return generate_dataset(folder / "faces", count, seed=0, image_size=200, progress=False)


@torch.no_grad()
def calibrate_batchnorm(net: AgeGenderNet, images: torch.Tensor) -> None:
    """Re-estimate every BatchNorm's statistics on `images` (uint8 RGB batch).

    The benchmarks cannot download ImageNet weights. A random MobileNetV2 with untouched
    statistics shrinks activations layer after layer (pooled features ~1e-9, the same for
    every face), unlike a trained one; with two threads its training step also ran 7x slower
    (312 ms against 44 ms at 32 px, measured; flushing denormals recovered part of it).
    Fitted statistics keep values in a trained network's range.
    """
    layers = [layer for layer in net.modules() if isinstance(layer, nn.BatchNorm2d)]
    momenta = [layer.momentum for layer in layers]
    was_training = net.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a plain average over the calibration batch
        layer.train()
    net.embed(images)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    net.train(was_training)  # frozen blocks back to eval mode


def best_of(rounds: int, pair: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each measurement `rounds` times, alternating; keep each one's best (lowest) value."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, measure in pair.items():
            value = measure()
            best[name] = min(best.get(name, value), value)
    return best


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` intra-op threads, then restore the previous setting.

    On a shared CPU, OpenMP threads spin-wait for each other at every operator: when another
    process holds a core, each waits a scheduler slice (measured: 2.4 s instead of 0.02 s for
    one forward pass at 32 px). One thread per process keeps timings and ratios meaningful.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """No Lightning banners and known-harmless warnings between the benchmark tables."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(eval mode|does not have many workers).*")
        warnings.filterwarnings("ignore", message=".*(self.log|LeafSpec).*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def print_result(title: str, result: dict[str, Any], columns: Sequence[tuple[str, str]]) -> None:
    """A plain-text table of result["rows"] (columns: (key, header)), then the ratios."""
    print(f"\n{title}\n  {result['notes']}")
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in result["rows"]]
    widths = [
        max(len(header), *(len(line[i]) for line in cells)) for i, (_, header) in enumerate(columns)
    ]
    print("  " + "  ".join(h.rjust(w) for (_, h), w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    for label, ratio in result["ratios"].items():
        print(f"  {label}: {ratio:.2f}x")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return "" if value is None else str(value)
