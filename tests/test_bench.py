"""Smoke test of the training benchmarks (data, frozen, train) in --quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agegender.bench.__main__ import main


@pytest.mark.parametrize("entry", ["data", "frozen", "train"])
def test_quick_benchmark_prints_its_pairs_and_writes_json(
    entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main([entry, "--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["machine"]["torch"]
    (result,) = results["entries"]
    assert result["entry"] == entry and result["rows"] and result["ratios"]
    assert all(ratio > 0 for ratio in result["ratios"].values())
    printed = capsys.readouterr().out
    for label in result["ratios"]:
        assert label in printed  # every pair is shown with its ratio
