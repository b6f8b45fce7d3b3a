"""Smoke test of the training benchmarks (data, frozen, train) in --quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agegender.bench.__main__ import main


def expected_ratios(entry: str, rows: list[dict]) -> dict[str, float]:
    """Each entry's ratios recomputed from its own rows: a ratio that is not what its rows say
    (a swapped pair, a wrong row) fails."""
    if entry == "data":
        decode = {
            r["augmentation"]: r["epoch_s"] for r in rows if r["source"] == "decode every epoch"
        }
        return {
            f"{r['source']} / decode, {r['augmentation']}": decode[r["augmentation"]] / r["epoch_s"]
            for r in rows
            if r["source"] != "decode every epoch"
        }
    if entry == "frozen":
        full, cached = rows
        return {"frozen epoch, cache / full pass": full["epoch_s"] / cached["epoch_s"]}
    speed = {(r["table"], r["variant"]): r["images_per_s"] for r in rows}
    lean = {v: s for (t, v), s in speed.items() if t == "lean loop"}
    return {
        f"{label} / fp32, NCHW": value / lean["fp32, NCHW"]
        for label, value in lean.items()
        if label != "fp32, NCHW"
    }


# the train entry times several trainings: a slow test
@pytest.mark.parametrize("entry", ["data", "frozen", pytest.param("train", marks=pytest.mark.slow)])
def test_quick_benchmark_prints_its_pairs_and_writes_json(
    entry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert main([entry, "--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["machine"]["torch"]
    (result,) = results["entries"]
    assert result["entry"] == entry and result["rows"] and result["ratios"]
    ratios = result["ratios"]
    for label, value in expected_ratios(entry, result["rows"]).items():
        assert ratios[label] == pytest.approx(value, rel=1e-6), label
    if entry == "frozen":
        full, cached = result["rows"]
        label = next(k for k in ratios if k.endswith("frozen phase incl. build"))
        assert ratios[label] == pytest.approx(full["phase_s"] / cached["phase_s"], rel=1e-6)
    if entry == "train":
        overhead = ratios["Lightning / plain loop time (overhead = this - 1)"]
        assert overhead == pytest.approx(1 + result["lightning_overhead"], rel=1e-9)
        assert 0.2 < overhead < 5  # the same training step twice: not an order of magnitude apart
    printed = capsys.readouterr().out
    for label in result["ratios"]:
        assert label in printed  # every pair is shown with its ratio


@pytest.mark.slow  # several trainings, as the train entry above
def test_train_entry_leaves_emulated_bf16_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from agegender.bench import train

    # the full entry's shape at the quick entry's size, on a CPU said to lack native bf16
    for name in ("SIZE", "BATCH", "STEPS", "ROUNDS"):
        monkeypatch.setattr(train, name, getattr(train, f"QUICK_{name}"))
    monkeypatch.setattr(train, "native_bf16", lambda: False)
    result = train.run(quick=False)
    variants = {row["variant"] for row in result["rows"] if row["table"] == "lean loop"}
    assert variants and not any(v.startswith("bf16") for v in variants)
    assert "fp32, channels-last, frozen blocks on onnxruntime" in variants
    assert not any(label.startswith("bf16") for label in result["ratios"])
    assert "bf16 rows skipped" in result["notes"]
