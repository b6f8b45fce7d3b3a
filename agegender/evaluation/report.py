"""Writing an evaluation: metrics.json, report.md embedding the PNGs, and TensorBoard logs.

Files are written under temporary names and renamed, so a report is never half there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
from torch.utils.tensorboard import SummaryWriter

from agegender.evaluation.metrics import CS_YEARS
from agegender.io import write_atomic

# (key, column title, format) of the metric columns in the markdown tables
COLUMNS = (
    ("count", "n", "{}"),
    ("age_mae", "MAE", "{:.2f}"),
    ("age_rmse", "RMSE", "{:.2f}"),
    (f"age_cs{CS_YEARS}", f"CS@{CS_YEARS}", "{:.1%}"),
    ("age_bias", "bias", "{:+.2f}"),
    ("gender_acc", "gender acc", "{:.1%}"),
    ("gender_auc", "ROC AUC", "{:.3f}"),
    ("gender_ece", "ECE", "{:.3f}"),
)


def shown_variant(tta: str | None) -> str:
    """The predictions a report leads with: flip-averaged under tta=flip, else plain."""
    return "flip" if tta == "flip" else "plain"


BREAKDOWN_TITLES = {"age_band": "age band", "gender": "gender", "race": "race"}


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def table(rows: dict[str, dict[str, Any]], first: str) -> list[str]:
    """A markdown table: one row per group, one column per metric."""
    lines = [
        "| " + " | ".join([first, *(title for _, title, _ in COLUMNS)]) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, row in rows.items():
        cells = [_cell(row.get(key), fmt) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def framing_label(summary: dict[str, Any]) -> str:
    """How the faces were framed, as the eval options that chose it: `crop=face` or
    `crop=dataset`, and `match_source=false` where source matching was left out."""
    off = summary.get("match_source") is False
    return f"crop={summary['crop']}" + (", match_source=false" if off else "")


def markdown(summary: dict[str, Any], pictures: dict[str, str]) -> str:
    """report.md: what was evaluated, overall numbers (plain and TTA), the fairness tables."""
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{summary['model']}` ({summary['backend']})",
        f"- data: {summary['data']}",
        f"- framing ({framing_label(summary)}): {summary['framing']}",
        f"- age: MAE/RMSE in years; CS@{CS_YEARS} = share within {CS_YEARS} years; bias = "
        "mean(predicted - true), positive = predicted too old",
        "- gender: accuracy at p_female = 0.5; ROC AUC of p_female (– where a group holds "
        "one gender only); ECE = expected calibration error of p_female (0 = a p_female of "
        "0.9 is right nine times in ten)",
        "",
        "## Overall",
        "",
    ]
    overall = {name: result["overall"] for name, result in summary["results"].items()}
    lines += table(overall, "predictions")
    main = summary["results"][shown_variant(summary.get("tta"))]
    for key, title in BREAKDOWN_TITLES.items():
        lines += ["", f"## By {title}", ""] + table(main["by"][key], title)
    lines += ["", "## Pictures", ""]
    for name, file_name in pictures.items():
        lines += [f"### {name}", "", f"![{name}]({file_name})", ""]
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, summary: dict[str, Any], pictures: dict[str, str]) -> None:
    write_atomic(out_dir / "metrics.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out_dir / "report.md", markdown(summary, pictures))


def log_tensorboard(log_dir: Path, summary: dict[str, Any], pictures: dict[str, Path]) -> None:
    """Overall and per-group scalars, the pictures and the report text, under `log_dir`."""

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for variant, result in summary["results"].items():
            for key, value in result["overall"].items():
                if value is not None:
                    writer.add_scalar(f"eval_{variant}/{key}", value)
            for breakdown, groups in result["by"].items():
                for group, row in groups.items():
                    writer.add_scalar(f"eval_{variant}_{breakdown}/{group}/age_mae", row["age_mae"])
        for name, path in pictures.items():
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            writer.add_image(f"eval/{name}", image, dataformats="HWC")
        writer.add_text("eval/report", markdown(summary, {}))
    finally:
        writer.close()
