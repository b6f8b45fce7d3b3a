"""`live.py ckpt=model.onnx`: the exported model runs the live loop on a generated video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from tests.conftest import run_entry

FRAMES = 20


def test_live_runs_on_an_exported_onnx_model(brief_onnx: Path, tmp_path: Path) -> None:
    from agegender.scenes import make_face_clip

    clip, out, faces = tmp_path / "clip.mp4", tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    make_face_clip(clip, faces=1, frames=FRAMES)
    result = run_entry(
        "live.py",
        f"ckpt={brief_onnx}",
        f"source={clip}",
        "display=false",
        f"save={out}",
        f"jsonl={faces}",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "onnxruntime" in result.stdout + result.stderr
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    video.release()
    records = [json.loads(line) for line in faces.read_text().splitlines()]
    assert records, "no face was labelled"
    assert all(0 <= r["p_female"] <= 1 and 0 < r["age"] < 120 for r in records)
