"""`python live.py` through its real entry point, headless: videos, folders, errors, Ctrl-C."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from agegender.faces.detectors import Box
from agegender.scenes import make_face_clip

REPO = Path(__file__).resolve().parents[1]
FRAMES = 45


def live(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "live.py"), "display=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[Box]]]:
    path = tmp_path_factory.mktemp("clip") / "moving_face.mp4"
    return path, make_face_clip(path, faces=1, frames=FRAMES)


def test_video_is_annotated_frame_for_frame_and_the_face_keeps_its_id(
    clip, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    path, truth = clip
    out, faces = tmp_path / "annotated.mp4", tmp_path / "faces.jsonl"
    result = live(f"ckpt={untrained_checkpoint}", f"source={path}", f"save={out}", f"jsonl={faces}")
    assert result.returncode == 0, result.stderr
    assert "frames/s" in result.stdout

    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    ok, first = video.read()
    assert ok and first.shape == (480, 640, 3)
    video.release()

    records = read_jsonl(faces)
    ids = set()
    for index, (true_box,) in enumerate(truth):
        here = [r for r in records if r["frame"] == index]
        assert here, f"no face box in frame {index}"
        best = max(here, key=lambda r: true_box.iou(Box(*r["box"])))
        assert true_box.iou(Box(*best["box"])) > 0.4
        assert 0 <= best["p_female"] <= 1 and best["age"] > 0
        ids.add(best["track"])
    assert len(ids) == 1, f"the moving face changed track id: {ids}"


def test_full_frame_detector_and_no_litter(
    clip, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    path, _ = clip
    result = live(
        f"ckpt={untrained_checkpoint}",
        f"source={path}",
        "detector=full_frame",
        "jsonl=faces.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "faces.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert all(r["box"] == [0, 0, 640, 480] for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.jsonl"]  # no Hydra folders


def test_folder_of_images_gives_a_csv_row_per_face(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(folder / "astronaut.png"), astronaut)
    cv2.imwrite(str(folder / "wall.jpg"), np.full((200, 300, 3), 90, np.uint8))
    table, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    result = live(
        f"ckpt={untrained_checkpoint}", f"source={folder}", f"csv={table}", f"save={annotated}"
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(table.open()))
    assert [row["file"] for row in rows] == ["astronaut.png"]
    box = Box(*(float(rows[0][k]) for k in ("x1", "y1", "x2", "y2")))
    assert box.iou(Box(177, 66, 272, 161)) > 0.6
    assert rows[0]["gender"] in ("F", "M")
    assert sorted(p.name for p in annotated.iterdir()) == ["astronaut.png", "wall.jpg"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["source=/no/such/video.mp4"], "source=/no/such/video.mp4"),
        (["ckpt=/no/such/model.ckpt"], "/no/such/model.ckpt"),
    ],
)
def test_bad_source_or_missing_checkpoint_is_one_line_and_exit_2(
    args: list[str], names: str, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    defaults = [f"ckpt={untrained_checkpoint}", f"source={tmp_path}"]
    result = live(*defaults, *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in result.stderr


def test_ctrl_c_leaves_complete_outputs(untrained_checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    for index in range(3000):
        writer.write(np.full((120, 160, 3), index % 255, np.uint8))
    writer.release()
    out, faces = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    args = [f"ckpt={untrained_checkpoint}", f"source={source}", "detector=full_frame"]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "live.py"), "display=false", *args, f"save={out}"]
        + [f"jsonl={faces}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        partial = list(tmp_path.glob(".faces.jsonl.tmp-*"))
        if partial and partial[0].read_text().count("\n") >= 10:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    records = read_jsonl(faces)
    assert 10 <= len(records) < 3000
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)
    video.release()
    assert not list(tmp_path.glob(".*.tmp-*"))
