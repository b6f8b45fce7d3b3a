"""Report pictures: predicted vs true age, errors by age band, gender confusion, worst errors.

Each function writes one PNG and returns its path; `summary` puts the first three and the
fairness bars on one page (the picture the README shows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np

from agegender.callbacks import annotate_grid
from agegender.contract import GENDERS, RACES, label_text
from agegender.io import atomic_target

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    try:
        # Same suffix, so matplotlib picks PNG; renamed into place when complete.
        with atomic_target(path, keep_suffix=True) as temporary:
            figure.savefig(temporary)
    finally:
        plt.close(figure)
    return path


def draw_scatter(axis: Axes, ages: np.ndarray, pred_age: np.ndarray, mae: float) -> None:
    top = float(max(ages.max(), pred_age.max(), 1)) + 2
    axis.scatter(ages, pred_age, s=8, alpha=0.5, edgecolors="none")
    axis.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
    axis.fill_between([0, top], [-5, top - 5], [5, top + 5], color="grey", alpha=0.15, label="±5 y")
    axis.set(
        xlim=(0, top), ylim=(min(0, pred_age.min()), top), xlabel="true age", ylabel="predicted age"
    )
    axis.set_title(f"predicted vs true age (MAE {mae:.2f})")
    axis.legend(loc="upper left", fontsize=8)


def draw_band_errors(axis: Axes, bands: dict[str, dict[str, Any]]) -> None:
    names = list(bands)
    x = np.arange(len(names))
    mae = [bands[n]["age_mae"] for n in names]
    bias = [bands[n]["age_bias"] for n in names]
    axis.bar(x - 0.2, mae, width=0.4, label="MAE")
    axis.bar(x + 0.2, bias, width=0.4, label="signed error (bias)")
    axis.axhline(0, color="black", linewidth=0.8)
    ticks = [f"{name}\nn={bands[name]['count']}" for name in names]
    axis.set_xticks(x, ticks, fontsize=7)
    axis.set(ylabel="years", title="age error by age band")
    axis.legend(fontsize=8)


def draw_confusion(axis: Axes, matrix: list[list[int]]) -> None:
    counts = np.array(matrix)
    axis.imshow(counts, cmap="Blues")
    total = max(int(counts.sum()), 1)
    for (row, col), value in np.ndenumerate(counts):
        colour = "white" if value > counts.max() / 2 else "black"
        axis.text(col, row, f"{value}\n{value / total:.0%}", ha="center", va="center", color=colour)
    axis.set_xticks([0, 1], [f"pred {g}" for g in GENDERS])
    axis.set_yticks([0, 1], [f"true {g}" for g in GENDERS])
    axis.set_title("gender confusion")


def draw_groups(axis: Axes, by: dict[str, dict[str, dict[str, Any]]]) -> None:
    groups = [(name, row) for key in ("gender", "race") for name, row in by[key].items()]
    names = [name for name, _ in groups]
    y = np.arange(len(groups))
    axis.barh(y, [row["age_mae"] for _, row in groups], color="tab:purple")
    for index, (_, row) in enumerate(groups):
        acc = row["gender_acc"]
        axis.annotate(
            f" acc {acc:.0%}  n={row['count']}", (row["age_mae"], index), fontsize=7, va="center"
        )
    axis.set_yticks(y, names, fontsize=8)
    axis.invert_yaxis()
    axis.set(xlabel="age MAE (years)", title="by gender and race (MAE, gender accuracy)")
    axis.margins(x=0.35)


def scatter_png(path: Path, ages: np.ndarray, pred_age: np.ndarray, mae: float) -> Path:
    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    draw_scatter(axis, ages, pred_age, mae)
    return _save(figure, path)


def band_errors_png(path: Path, bands: dict[str, dict[str, Any]]) -> Path:
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    draw_band_errors(axis, bands)
    return _save(figure, path)


def confusion_png(path: Path, matrix: list[list[int]]) -> Path:
    figure, axis = plt.subplots(figsize=(4, 3.6), dpi=100)
    draw_confusion(axis, matrix)
    return _save(figure, path)


def summary_png(
    path: Path, ages: np.ndarray, pred_age: np.ndarray, report: dict[str, Any], title: str
) -> Path:
    figure, axes = plt.subplots(2, 2, figsize=(11, 8.5), dpi=80)
    draw_scatter(axes[0, 0], ages, pred_age, report["overall"]["age_mae"])
    draw_band_errors(axes[0, 1], report["by"]["age_band"])
    draw_confusion(axes[1, 0], report["gender_confusion"])
    draw_groups(axes[1, 1], report["by"])
    figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def worst_errors_png(
    path: Path,
    images: np.ndarray,
    ages: np.ndarray,
    genders: np.ndarray,
    races: np.ndarray,
    pred_age: np.ndarray,
    p_female: np.ndarray,
    count: int = 16,
) -> Path:
    """The faces with the largest age errors, each with true and predicted labels."""
    worst = np.argsort(-np.abs(pred_age - ages), kind="stable")[:count]
    truths = [f"{label_text(ages[i], genders[i])} {RACES[int(races[i])]}" for i in worst]
    predictions = [
        f"{label_text(pred_age[i], p_female[i])} ({pred_age[i] - ages[i]:+.0f})" for i in worst
    ]
    scale = 2 if images.shape[-1] < 128 else 1  # room for the text, without a huge PNG
    grid = annotate_grid(images[worst], truths, predictions, scale=scale)
    with atomic_target(path, keep_suffix=True) as temporary:
        cv2.imwrite(str(temporary), cv2.cvtColor(grid.transpose(1, 2, 0), cv2.COLOR_RGB2BGR))
    return path
