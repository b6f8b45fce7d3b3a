"""Age-balanced sampling (`data.age_balance`): rare ages are drawn more often in training.

UTKFace holds many faces in their twenties and few past sixty, and a model trained on it
predicts the old far too young. Each training face is drawn with a weight that falls with
how common its age is: the count of faces at that age, smoothed over neighbouring years
(label-distribution smoothing, Yang et al. 2021), raised to `-power` (1: as if every age were
equally common; 0.5, the usual choice: half-way on a log scale).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import WeightedRandomSampler

from agegender.errors import UserError

log = logging.getLogger(__name__)


class AgeBalanceError(UserError):
    """A `data.age_balance` setting that cannot work."""


def smoothed_age_counts(ages: Sequence[float], smooth: float) -> np.ndarray:
    """Faces per whole year of age (index = age), smoothed by a Gaussian of `smooth` years."""
    counts = np.bincount(np.rint(np.asarray(ages, dtype=np.float64)).astype(np.int64))
    if smooth <= 0:
        return counts.astype(np.float64)
    reach = int(np.ceil(3 * smooth))
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-(offsets**2) / (2 * smooth**2))
    padded = np.pad(counts.astype(np.float64), reach)
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def age_weights(ages: Sequence[float], power: float, smooth: float) -> np.ndarray:
    """Each face's sampling weight, (smoothed count of its age) ** -power, mean 1."""
    ages = np.asarray(ages, dtype=np.float64)
    density = smoothed_age_counts(ages, smooth)[np.rint(ages).astype(np.int64)]
    weights = density**-power
    return weights / weights.mean()


def balance_options(setting: Mapping[str, Any]) -> tuple[float, float]:
    """(power, smooth) of a `data.age_balance` setting; AgeBalanceError when unusable."""
    try:
        unknown = set(setting) - {"power", "smooth"}
        power, smooth = float(setting.get("power", 0.5)), float(setting.get("smooth", 2.0))
    except (TypeError, ValueError, AttributeError):
        unknown, power, smooth = {"?"}, 0.0, 0.0
    if unknown or not 0 < power <= 1 or not 0 <= smooth <= 20:
        raise AgeBalanceError(
            f"data.age_balance={setting}: use {{power: 0..1 (0 excluded), smooth: 0..20 "
            f"years}}, e.g. data.age_balance={{power:0.5,smooth:2}}, or null for none"
        )
    return power, smooth


def balanced_sampler(ages: Sequence[float], setting: Mapping[str, Any]) -> WeightedRandomSampler:
    """An epoch of len(ages) draws, with replacement, weighted by `age_weights`."""
    power, smooth = balance_options(setting)
    weights = age_weights(ages, power, smooth)
    log.info(
        "age-balanced sampling (power %g, smooth %g years)%s", power, smooth, _effect(ages, weights)
    )
    return WeightedRandomSampler(weights.tolist(), num_samples=len(weights), replacement=True)


def _effect(ages: Sequence[float], weights: np.ndarray) -> str:
    """What the weights do to the old against the most common faces, for the training log."""
    ages = np.asarray(ages, dtype=np.float64)
    old, twenties = weights[ages >= 70], weights[(ages >= 20) & (ages < 30)]
    if not len(old) or not len(twenties):
        return ""
    ratio = old.mean() / twenties.mean()
    return f": a face aged 70 or more is drawn {ratio:.1f}x as often as one in its twenties"
