"""What the training benchmarks (data, frozen, train) share: generated faces,
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

from agegender.data.synthetic import generate_dataset

THREADS = 1  # intra-op threads for the training benchmarks, as for inference and live


def faces(folder: Path, count: int) -> Path:
    """UTKFace-format generated faces at UTKFace's 200 px (what a loader decodes)."""
    return generate_dataset(folder / "faces", count, seed=0, image_size=200, progress=False)


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
    process holds a core, each waits a scheduler slice (docs/training_at_scale.md, Threads).
    One thread per process keeps timings and ratios meaningful.
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
