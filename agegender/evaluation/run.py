"""One evaluation: model + images -> predictions -> metrics, pictures, report, TensorBoard."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agegender.checkpoint import home_folder
from agegender.errors import UserError
from agegender.evaluation import plots
from agegender.evaluation.data import EvalSet, load_eval_set
from agegender.evaluation.metrics import full_report
from agegender.evaluation.report import log_tensorboard, shown_variant, write_reports
from agegender.inference.backends import load_predictor
from agegender.inference.predictor import Predictor
from agegender.io import PathClashError, check_outputs, write_atomic

TTA_CHOICES = ("none", "flip")
# What an evaluation writes into its folder (eval.py adds eval_config.yaml).
REPORT_FILES = (
    "metrics.json",
    "report.md",
    "predictions.csv",
    "eval_config.yaml",
    "summary.png",
    "age_scatter.png",
    "age_band_errors.png",
    "gender_confusion.png",
    "worst_errors.png",
)
# Present in a training run's folder: an evaluation must not write its files there.
RUN_MARKERS = (".hydra", "checkpoints", "split.json", "train.log")


@dataclass
class EvalResult:
    out_dir: Path
    summary: dict[str, Any]
    pictures: dict[str, Path]


def default_out_dir(model_path: Path) -> Path:
    """`<run>/eval` for a model inside `<run>/checkpoints/`, else `eval` beside the model."""
    return home_folder(model_path) / "eval"


def check_out_dir(out: Path, model_path: Path) -> None:
    """Refuse a report folder whose files would replace a training run's own (its metrics.json)
    or the model itself; one line, before anything is written."""
    if out.exists() and not out.is_dir():
        what = "the model" if out.resolve() == model_path.resolve() else "a file"
        raise PathClashError(
            f"out={out}: this is {what}, and the report is a folder of files; choose a folder "
            f"for out= (the default is <run>/eval)"
        )
    marker = next((name for name in RUN_MARKERS if (out / name).exists()), None)
    metrics = out / "metrics.json"
    if marker is None and metrics.is_file():
        try:
            written_by_eval = "results" in json.loads(metrics.read_text())
        except (OSError, ValueError):
            written_by_eval = False
        marker = None if written_by_eval else "metrics.json"
    if marker is not None:
        raise PathClashError(
            f"out={out}: this folder holds a training run's {marker}, whose metrics.json the "
            f"report would replace; choose another out= (the default is <run>/eval)"
        )
    check_outputs({"out": [out / name for name in REPORT_FILES]}, {"ckpt": model_path})


def predict_all(
    predictor: Predictor, images: np.ndarray, batch_size: int = 64, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(age_years, p_female) for uint8 NCHW images; `flip` averages with the mirrored faces."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        outputs.append(predictor.predict_images(batch, flip).astype(np.float64))
    joined = np.concatenate(outputs)
    return joined[:, 0], joined[:, 1]


def predictions_csv(data: EvalSet, pred_age: np.ndarray, p_female: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "age", "gender", "race", "pred_age", "p_female"])
    for row in zip(
        data.relpaths, data.ages, data.genders, data.races, pred_age, p_female, strict=True
    ):
        writer.writerow([*row[:4], f"{row[4]:.4f}", f"{row[5]:.6f}"])
    return buffer.getvalue()


def draw_pictures(
    out_dir: Path,
    data: EvalSet,
    pred_age: np.ndarray,
    p_female: np.ndarray,
    report: dict[str, Any],
    title: str,
    worst: int,
) -> dict[str, Path]:
    labels = (data.ages, data.genders, data.races)
    pictures = {
        "summary": plots.summary_png(out_dir / "summary.png", data.ages, pred_age, report, title),
        "age scatter": plots.scatter_png(
            out_dir / "age_scatter.png", data.ages, pred_age, report["overall"]["age_mae"]
        ),
        "age error by band": plots.band_errors_png(
            out_dir / "age_band_errors.png", report["by"]["age_band"]
        ),
        "gender confusion": plots.confusion_png(
            out_dir / "gender_confusion.png", report["gender_confusion"]
        ),
    }
    if worst > 0:  # worst=0: no grid of the worst errors
        pictures["worst age errors"] = plots.worst_errors_png(
            out_dir / "worst_errors.png", data.images, *labels, pred_age, p_female, count=worst
        )
    return pictures


def evaluate(
    model_path: str | Path,
    data_cfg: dict[str, Any],
    out_dir: str | Path | None = None,
    part: str = "test",
    tta: str | None = None,
    batch_size: int = 64,
    worst: int = 16,
    tensorboard: bool = True,
    crop: str = "face",
    runtime: str = "auto",
    overlap: str = "skip",
    match_source: bool = True,
) -> EvalResult:
    """Evaluate a checkpoint or exported model and write the report into `out_dir`.

    `crop=face` frames every photograph through the face path, as live.py does, so the
    numbers are what live shows (`match_source` as live's option); `crop=dataset` scores the
    photographs as stored. A whole folder (`data.root` alone) is scored without the
    photographs the checkpoint trained or was validated on unless `overlap=keep`."""
    tta = tta or "none"
    if tta not in TTA_CHOICES:
        raise UserError(f"tta={tta}: choose tta=flip or leave it out")
    model_path = Path(model_path)
    out = Path(out_dir).expanduser() if out_dir else default_out_dir(model_path)
    check_out_dir(out, model_path)
    predictor = load_predictor(model_path, runtime=runtime)
    data = load_eval_set(
        predictor.meta, data_cfg, part, crop=crop, overlap=overlap, match_source=match_source
    )
    out.mkdir(parents=True, exist_ok=True)
    labels = (data.ages, data.genders, data.races)
    variants = {"plain": False, "flip": True} if tta == "flip" else {"plain": False}
    results, predictions = {}, {}
    for name, flip in variants.items():
        predictions[name] = predict_all(predictor, data.images, batch_size, flip=flip)
        results[name] = full_report(*labels, *predictions[name])
    chosen = shown_variant(tta)  # what the pictures and predictions show
    pred_age, p_female = predictions[chosen]
    title = f"{model_path.name} on {len(data)} images ({data.root.name})"
    pictures = draw_pictures(out, data, pred_age, p_female, results[chosen], title, worst)
    write_atomic(out / "predictions.csv", predictions_csv(data, pred_age, p_female))
    summary = {
        "model": str(model_path),
        "backend": predictor.backend,
        "data": data.source,
        "overlap": data.overlap or None,
        "split": part,
        "image_size": predictor.image_size,
        "tta": tta,
        "crop": crop,
        "match_source": match_source if crop == "face" else None,
        "framing": data.framing,
        "results": results,
    }
    write_reports(out, summary, {name: path.name for name, path in pictures.items()})
    if tensorboard:
        log_tensorboard(out / "tensorboard", summary, pictures)
    return EvalResult(out_dir=out, summary=summary, pictures=pictures)
