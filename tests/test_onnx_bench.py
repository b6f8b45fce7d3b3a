"""Smoke test of the inference benchmark (torch eager vs onnxruntime fp32/int8) in --quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agegender.bench.__main__ import main

BACKENDS = {"torch eager fp32", "onnxruntime fp32", "onnxruntime int8"}


def test_quick_inference_benchmark_compares_three_engines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["infer", "--quick", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["entries"]
    assert result["entry"] == "infer"
    assert {row["backend"] for row in result["rows"]} == BACKENDS
    assert {row["batch"] for row in result["rows"]} == {1, 8}
    assert all(row["images_per_s"] > 0 for row in result["rows"])
    assert len(result["ratios"]) == 4
    speed = {(row["backend"], row["batch"]): row["images_per_s"] for row in result["rows"]}
    for batch in (1, 8):
        for name in ("onnxruntime fp32", "onnxruntime int8"):
            ratio = result["ratios"][f"{name} / torch eager, batch {batch}"]
            assert ratio == pytest.approx(speed[(name, batch)] / speed[("torch eager fp32", batch)])
    printed = capsys.readouterr().out
    assert all(label in printed for label in result["ratios"])
