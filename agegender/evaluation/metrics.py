"""Evaluation metrics, overall and per group (age band, gender, race): the fairness table.

All metrics come from torchmetrics.functional, the library the training module logs with,
so a number here means what the same name means in TensorBoard. Inputs are float64 so that
group values recombine exactly into the totals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchmetrics.functional as tmf
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_confusion_matrix,
)

from agegender.calibration import expected_calibration_error
from agegender.contract import GENDERS, RACES
from agegender.data.utkface import AGE_BANDS, age_band

CS_YEARS = 5  # cumulative score: share of faces whose age is off by at most this many years
BAND_NAMES = tuple(f"{low}-{high}" for low, high in AGE_BANDS)


def age_metrics(true_age: np.ndarray, pred_age: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, CS@5 and mean signed error (bias: positive = predicted too old)."""
    target = torch.as_tensor(true_age, dtype=torch.float64)
    pred = torch.as_tensor(pred_age, dtype=torch.float64)
    error = pred - target
    return {
        "age_mae": float(tmf.mean_absolute_error(pred, target)),
        "age_rmse": float(tmf.mean_squared_error(pred, target, squared=False)),
        f"age_cs{CS_YEARS}": float((error.abs() <= CS_YEARS).double().mean()),
        "age_bias": float(error.mean()),
    }


def gender_metrics(true_gender: np.ndarray, p_female: np.ndarray) -> dict[str, float | None]:
    """Accuracy at p = 0.5, ROC AUC (None where a group holds only one gender) and the
    expected calibration error of p_female."""
    target = torch.as_tensor(true_gender, dtype=torch.long)
    prob = torch.as_tensor(p_female, dtype=torch.float64)
    auc = float(binary_auroc(prob, target)) if target.unique().numel() == 2 else None
    return {
        "gender_acc": float(binary_accuracy(prob, target)),
        "gender_auc": auc,
        "gender_ece": expected_calibration_error(prob, target),
    }


def summarize(
    ages: np.ndarray, genders: np.ndarray, pred_age: np.ndarray, p_female: np.ndarray
) -> dict[str, Any]:
    """All metrics for one group of faces, with its size."""
    return {
        "count": int(len(ages)),
        **age_metrics(ages, pred_age),
        **gender_metrics(genders, p_female),
    }


def confusion(genders: np.ndarray, p_female: np.ndarray) -> list[list[int]]:
    """2x2 counts, rows = true (male, female), columns = predicted (male, female)."""
    matrix = binary_confusion_matrix(
        torch.as_tensor(p_female, dtype=torch.float64), torch.as_tensor(genders, dtype=torch.long)
    )
    return matrix.tolist()


def group_labels(ages: np.ndarray, genders: np.ndarray, races: np.ndarray) -> dict[str, list[str]]:
    """Each face's group name under each breakdown."""
    return {
        "age_band": [age_band(int(age)) for age in ages],
        "gender": [GENDERS[int(g)] for g in genders],
        "race": [RACES[int(r)] for r in races],
    }


def _order(breakdown: str, names: set[str]) -> list[str]:
    known = {"age_band": BAND_NAMES, "gender": GENDERS, "race": RACES}[breakdown]
    return [n for n in known if n in names] + sorted(names - set(known))


def breakdowns(
    ages: np.ndarray,
    genders: np.ndarray,
    races: np.ndarray,
    pred_age: np.ndarray,
    p_female: np.ndarray,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{breakdown: {group: metrics}}; empty groups are left out, so counts add up to N."""
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for breakdown, labels in group_labels(ages, genders, races).items():
        names = np.array(labels)
        tables[breakdown] = {}
        for name in _order(breakdown, set(labels)):
            mask = names == name
            tables[breakdown][name] = summarize(
                ages[mask], genders[mask], pred_age[mask], p_female[mask]
            )
    return tables


def full_report(
    ages: np.ndarray,
    genders: np.ndarray,
    races: np.ndarray,
    pred_age: np.ndarray,
    p_female: np.ndarray,
) -> dict[str, Any]:
    """Overall metrics, gender confusion matrix and the three breakdowns."""
    return {
        "overall": summarize(ages, genders, pred_age, p_female),
        "gender_confusion": confusion(genders, p_female),
        "by": breakdowns(ages, genders, races, pred_age, p_female),
    }
