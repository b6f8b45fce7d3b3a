"""The live benchmark's generated clip, and (slow) the benchmark itself in --quick mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from agegender.bench import live_loop as bench_live
from agegender.faces.detectors import HaarDetector


def test_face_clip_has_its_faces_where_its_truth_says(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    truth = bench_live.make_face_clip(path, faces=3, frames=5)
    assert [len(boxes) for boxes in truth] == [3] * 5
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (480, 640, 3)
    found = HaarDetector().detect(frame)
    for true in truth[0]:
        assert max(true.iou(box) for box in found) > 0.5


@pytest.mark.slow
def test_quick_live_benchmark_runs_every_row() -> None:
    result = bench_live.run(quick=True)
    rows = {(r["faces"], r["mode"], r["backend"]): r for r in result["rows"]}
    for faces in (1, 3):  # frame rates depend on the machine; the tuned cadence always wins
        assert rows[(faces, "tuned", "torch")]["fps"] > rows[(faces, "every frame", "torch")]["fps"]
    assert all(r["box_recall"] >= 0.95 for r in result["rows"])
    assert len(result["ratios"]) == 4
    for (faces, mode, backend), row in rows.items():
        if mode == "tuned":
            ratio = result["ratios"][f"tuned/every-frame fps, {faces} face(s), {backend}"]
            assert ratio == pytest.approx(
                row["fps"] / rows[(faces, "every frame", backend)]["fps"], abs=0.006
            )


@pytest.mark.parametrize("size", ["16", "4096"])
def test_live_benchmark_refuses_an_input_size_training_refuses(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_live.main(["--image-size", "128", size])
    assert exit_info.value.code != 0
    assert "--image-size" in capsys.readouterr().err
