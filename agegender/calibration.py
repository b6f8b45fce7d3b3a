"""How far P(female) can be trusted: temperature scaling fitted on the validation split, and
the expected calibration error (ECE) that shows what it changed.

A network trained with cross-entropy tends to be over-confident; dividing its gender logit
by one temperature, chosen to minimise the validation split's log loss, keeps every
decision (the sign of the logit) and makes "P(female) 0.9" mean about nine in ten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

ECE_BINS = 15
# log-spaced candidates: a temperature outside this range means the split is too small
TEMPERATURES = torch.logspace(-1.0, 1.0, steps=401, dtype=torch.float64)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising the mean log loss of sigmoid(logits / T) (1.0 for an
    empty or one-class split, where there is nothing to fit)."""
    logits = logits.detach().double().flatten().cpu()
    labels = labels.detach().double().flatten().cpu()
    if logits.numel() == 0 or labels.min() == labels.max():
        return 1.0
    scaled = logits[None, :] / TEMPERATURES[:, None]
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        scaled, labels.expand_as(scaled), reduction="none"
    ).mean(dim=1)
    return float(TEMPERATURES[int(losses.argmin())])


def expected_calibration_error(p_female: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE over equal-width confidence bins (torchmetrics' binary_calibration_error)."""
    # imported here: torchmetrics takes seconds to import, and live.py, serve.py and
    # export.py reach this module (through checkpoint loading) without needing it
    from torchmetrics.functional.classification import binary_calibration_error

    probs = torch.as_tensor(p_female, dtype=torch.float64).flatten().contiguous()
    if probs.numel() == 0:
        return float("nan")
    target = torch.as_tensor(labels).long().flatten().contiguous()
    return float(binary_calibration_error(probs, target, n_bins=ECE_BINS))


def recorded_temperature(meta: Mapping[str, Any]) -> float:
    """The temperature a checkpoint's metadata records (1.0 when none was fitted)."""
    calibration = meta.get("calibration") or {}
    return float(calibration.get("gender_temperature", 1.0))
