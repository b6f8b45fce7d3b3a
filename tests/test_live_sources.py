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


class GatedCamera:
    """A camera whose frames come only when the test lets them: no timing guesswork."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.count = 0
        self.stopped = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.stopped:
            self.gate.acquire()
        if self.stopped:
            return False, None
        self.count += 1
        return True, np.full((4, 4, 3), self.count % 256, np.uint8)

    def let_through(self, frames: int) -> None:
        for _ in range(frames):
            self.gate.release()


def test_camera_reader_keeps_only_the_newest_frame() -> None:
    camera = GatedCamera()
    reader = _Reader(camera, keep_latest=True, queue_size=1)
    reader.start()
    seen = 0
    try:
        for burst in (1, 7, 15, 3):
            target = camera.count + burst
            camera.let_through(burst)  # frames arrive while the model is busy
            with reader.condition:
                assert reader.condition.wait_for(lambda t=target: reader.count >= t, timeout=30)
            image, _, now_seen = reader.next_latest(seen, timeout=30)
            # the newest frame, never one of those that went by in between
            assert now_seen == target and int(image[0, 0, 0]) == target % 256
            seen = now_seen
        # nothing newer yet: the reader does not hand out the same frame twice
        assert reader.next_latest(seen, timeout=0.05) is None
    finally:
        camera.stopped = True
        camera.let_through(1)
        reader.stop()
