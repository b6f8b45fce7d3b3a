"""Damaged inputs are reported and counted: a cut-short video, a stalled stream, unreadable
files and folders in the data folder."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data.utkface import discover, walk_files
from agegender.inference.sources import CaptureSource, open_source
from tests.conftest import run_entry

FRAMES = 60


def damaged_video(folder: Path) -> Path:
    """An mp4 of 60 frames whose middle bytes are zeroed: OpenCV stops reading part-way."""
    path = folder / "damaged.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        writer.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    start, end = int(len(data) * 0.3), int(len(data) * 0.5)
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))
    return path


def test_a_video_that_ends_early_reports_the_lost_frames(tmp_path: Path) -> None:
    path = damaged_video(tmp_path)
    with open_source(str(path)) as source:
        read = sum(1 for _ in source)
        assert 0 < read < FRAMES
        assert source.problem is not None
        assert f"ended after {read} of its {FRAMES} frames" in source.problem
        assert f"{FRAMES - read} frames lost" in source.problem


def test_a_complete_video_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fine.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for index in range(12):
        writer.write(np.full((48, 64, 3), index * 10, np.uint8))
    writer.release()
    with open_source(str(path)) as source:
        assert sum(1 for _ in source) == 12 and source.problem is None


def test_live_exits_non_zero_on_lost_frames_unless_allowed(
    tmp_path: Path, untrained_checkpoint: Path
) -> None:
    path = damaged_video(tmp_path)
    faces = tmp_path / "faces.jsonl"
    args = [
        "display=false",
        "detector=full_frame",
        f"ckpt={untrained_checkpoint}",
        f"source={path}",
        f"jsonl={faces}",
    ]
    result = run_entry("live.py", *args, timeout=180)
    assert result.returncode == 3, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "frames lost" in lines[0] and "allow_lost_frames" in lines[0]
    read = len(faces.read_text().splitlines())  # full_frame: one face per frame read
    assert 0 < read < FRAMES and f"ended after {read} of its {FRAMES}" in lines[0]

    allowed = run_entry("live.py", *args, "allow_lost_frames=true", timeout=180)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert allowed.stderr.startswith("warning: ") and "frames lost" in allowed.stderr


class StallingCamera:
    """A capture that gives a few frames and then blocks, as a stream whose server went quiet."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.count = 0
        self.released = threading.Event()

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.count >= self.frames:
            self.released.wait()  # stalls until closed
            return False, None
        self.count += 1
        return True, np.full((4, 4, 3), self.count, np.uint8)

    def release(self) -> None:
        self.released.set()


def test_a_stalled_stream_ends_with_a_report() -> None:
    camera = StallingCamera(frames=3)
    source = CaptureSource(camera, "rtsp://quiet", live=True, stall_timeout=0.5)  # type: ignore[arg-type]
    try:
        frames = list(source)
    finally:
        source.close()
    assert 1 <= len(frames) <= 3
    assert source.problem is not None and "stalled" in source.problem
    assert "rtsp://quiet" in source.problem and "0.5 s" in source.problem


def test_a_stream_that_ends_is_not_a_stall() -> None:
    class Ending(StallingCamera):
        def read(self) -> tuple[bool, np.ndarray | None]:
            if self.count >= self.frames:
                return False, None
            return super().read()

    source = CaptureSource(Ending(frames=3), "rtsp://done", live=True, stall_timeout=5.0)  # type: ignore[arg-type]
    try:
        assert len(list(source)) >= 1
    finally:
        source.close()
    assert source.problem is None


def test_unreadable_files_and_folders_are_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "faces"
    (root / "ok").mkdir(parents=True)
    (root / "locked").mkdir()
    rng = np.random.default_rng(0)
    for index, name in enumerate(["25_0_1_1.jpg", "30_1_2_2.jpg", "40_0_0_3.jpg"]):
        image = rng.integers(0, 255, (20, 20, 3), np.uint8) + index
        cv2.imwrite(str(root / "ok" / name), image)
    cv2.imwrite(str(root / "locked" / "50_1_1_4.jpg"), np.zeros((20, 20, 3), np.uint8))
    (root / "ok" / "loop").symlink_to(root)  # a link back up: must not be walked forever
    # Permissions do not stop root, so the two failures are made where the code meets them.
    real_read, real_scandir = Path.read_bytes, os.scandir

    def read_bytes(self: Path) -> bytes:
        if self.name == "30_1_2_2.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    def scandir(path: object = ".") -> object:
        if Path(str(path)).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(root)
    assert sorted(s.relpath for s in found.samples) == ["ok/25_0_1_1.jpg", "ok/40_0_0_3.jpg"]
    assert found.skipped["unreadable file"] == 1
    assert found.skipped["unreadable folder"] == 1
    assert found.skipped["folder link to a folder already walked"] == 1


def test_walk_files_lists_every_file_once(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x", "a/y", "a/b/z"):
        (tmp_path / name).write_text(name)
    skipped: Counter = Counter()
    files = walk_files(tmp_path, skipped)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/b/z", "a/y", "x"]
    assert not skipped
