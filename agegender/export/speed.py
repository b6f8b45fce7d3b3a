"""Throughput measurement shared by the int8 report and the inference benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def images_per_second(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    min_seconds: float = 1.0,
    min_runs: int = 3,
    warmup: int = 1,
) -> float:
    """Images per second of `run` on `batch`: repeated until both minimums are met."""
    for _ in range(warmup):
        run(batch)  # first calls pay for allocation and kernel selection
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        run(batch)
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)
