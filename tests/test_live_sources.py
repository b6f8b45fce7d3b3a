"""Frame sources: every kind opens, bad ones fail with a SourceError naming the fix."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.inference.sources import (
    CaptureSource,
    ImageFilesSource,
    SourceError,
    _Reader,
    open_source,
)


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (96, 64)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), index * 10, np.uint8))
    writer.release()
    return path


def test_video_file_gives_every_frame_in_order(tmp_path: Path) -> None:
    with open_source(str(write_video(tmp_path / "clip.mp4"))) as source:
        assert isinstance(source, CaptureSource) and not source.live
        assert source.fps == pytest.approx(25.0)
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (64, 96, 3)
    assert frames[3].time == pytest.approx(3 / 25)
    # a slow consumer still gets them all: files are never dropped
    assert np.mean(frames[11].image) > np.mean(frames[1].image)


def test_slow_consumer_of_a_file_gets_every_frame(tmp_path: Path) -> None:
    with open_source(str(write_video(tmp_path / "clip.mp4", 20)), queue_size=2) as source:
        indices = []
        for frame in source:
            time.sleep(0.005)
            indices.append(frame.index)
    assert indices == list(range(20))


def test_image_file_and_folder(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as source:
        assert isinstance(source, ImageFilesSource) and source.stills
        assert [f.name for f in source] == ["a.jpg", "b.png"]
    with open_source(str(tmp_path / "b.png")) as source:
        assert [f.image.shape for f in source] == [(20, 30, 3)]


def test_unreadable_image_in_a_folder_is_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with open_source(str(tmp_path)) as source:
        assert [f.name for f in source] == ["good.png"]
    assert "bad.jpg" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.mp4", "no such file or folder"),
        (lambda p: p, "no images"),
        (lambda p: _write(p / "broken.mp4", b"not a video"), "not a readable video"),
        (lambda p: _write(p / "broken.png", b"not a png"), "not a readable image"),
    ],
)
def test_bad_sources_say_what_is_wrong(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        source = open_source(str(make(tmp_path)))
        list(source)  # an image is read lazily


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_camera_that_cannot_open_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="camera 97 could not be opened"):
        open_source(97)


class FakeCamera:
    """Delivers numbered frames every 2 ms, like a fast camera."""

    def __init__(self, frames: int = 200) -> None:
        self.count = 0
        self.frames = frames
        self.lock = threading.Lock()

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(0.002)
        if self.count >= self.frames:
            return False, None
        self.count += 1
        return True, np.full((4, 4, 3), self.count % 256, np.uint8)


def test_camera_reader_keeps_only_the_newest_frame() -> None:
    camera = FakeCamera()
    reader = _Reader(camera, keep_latest=True, queue_size=1)
    reader.start()
    seen, taken = 0, []
    try:
        for _ in range(5):
            image, _, seen = reader.next_latest(seen, timeout=2.0)
            taken.append(seen)
            time.sleep(0.03)  # a slow model: about 15 camera frames go by
            newest = camera.count
        # what comes next is the newest frame, never one queued while we were busy
        _, _, next_seen = reader.next_latest(seen, timeout=2.0)
        assert next_seen >= newest
    finally:
        reader.stop()
    assert all(b - a > 5 for a, b in zip(taken, taken[1:], strict=False))
