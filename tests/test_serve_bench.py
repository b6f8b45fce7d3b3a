"""Smoke test of the server benchmark (`python -m agegender.bench serve --quick`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agegender.bench.__main__ import main


@pytest.mark.slow
def test_quick_serve_benchmark_measures_requests_and_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main(["serve", "--quick", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["entries"]
    assert result["entry"] == "serve"
    what = [row["what"] for row in result["rows"]]
    assert what.count("POST /api/analyze") == 3 and "WS /ws/live round trip" in what
    assert "POST /api/analyze, detector.min_face=0" in what  # full-resolution uploads' row
    assert all(row["per_s"] > 0 and row["median_ms"] > 0 for row in result["rows"])
    printed = capsys.readouterr().out
    assert all(label in printed for label in result["ratios"])
