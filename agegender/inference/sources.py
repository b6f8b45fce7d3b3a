"""Frame sources: camera, video file, stream URL, image file or folder of images.

`open_source(spec)` picks the kind from the spec and fails early with a `SourceError` that
names the source and the fix. Frames are BGR uint8, as OpenCV gives them.

Cameras and streams are read in their own thread that keeps only the newest frame, so the
frame shown is never stale however slow the model is. Video files are decoded in a thread
too, through a bounded queue: decoding overlaps the model and no frame is ever dropped.

Frames that a source should have given but could not are reported in `Source.problem`: a
video that ends before its frame count (damaged or truncated) and a camera or stream that
stalls (no new frame for `stall_timeout` seconds).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agegender.errors import UserError
from agegender.preprocess import ImageDecodeError, decode_bgr

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_FPS = 30.0
STALL_TIMEOUT = 10.0  # seconds without a new frame before a camera or stream counts as stalled
STILLS_FPS = 1.0  # a folder saved as a video shows each image for one second
_KINDS = "a camera index (source=0), a video, an image, a folder of images or a stream URL"


class SourceError(UserError):
    """A source that cannot be opened or read."""


@dataclass
class Frame:
    index: int  # position in this source's sequence of delivered frames
    time: float  # seconds: position in the video, or since a camera was opened
    image: np.ndarray  # BGR uint8 [H, W, 3]
    name: str = ""  # file name, for image sources


class Source(ABC):
    """An iterable of Frames; close() releases the device or file (also on `with` exit)."""

    description: str
    fps: float = DEFAULT_FPS
    live: bool = False  # frames may be skipped to stay current (cameras, streams)
    stills: bool = False  # unrelated images: no tracking across them
    problem: str | None = None  # frames were lost: what happened (set when iteration ends)

    @abstractmethod
    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing
        pass

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


class _Reader(threading.Thread):
    """Reads a cv2.VideoCapture in the background.

    keep_latest=True: only the newest frame is kept (cameras, streams); False: every frame
    goes through a bounded queue, blocking the reader when the consumer is behind (files).
    """

    def __init__(self, capture: cv2.VideoCapture, keep_latest: bool, queue_size: int) -> None:
        super().__init__(name="agegender-capture", daemon=True)
        self.capture = capture
        self.keep_latest = keep_latest
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self.condition = threading.Condition()
        self.latest: tuple[np.ndarray, float] | None = None
        self.count = 0  # frames captured so far (keep_latest mode)
        self.ended = False
        self.stopping = threading.Event()
        self.read_seconds = 0.0  # time spent decoding, for the benchmark
        self.started_at = time.monotonic()

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            start = time.perf_counter()
            ok, image = self.capture.read()
            self.read_seconds += time.perf_counter() - start
            if not ok:
                failures += 1
                # a camera may drop a frame now and then; a file or a dead device stops
                if not self.keep_latest or failures >= 25:
                    break
                time.sleep(0.01)
                continue
            failures = 0
            if self.keep_latest:
                with self.condition:
                    self.latest = (image, time.monotonic() - self.started_at)
                    self.count += 1
                    self.condition.notify_all()
            else:
                self._put(image)
        with self.condition:
            self.ended = True
            self.condition.notify_all()
        if not self.keep_latest:
            self._put(_END)

    def _put(self, item: Any) -> None:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_queued(self) -> np.ndarray | None:
        item = self.queue.get()
        return None if item is _END else item

    def next_latest(self, seen: int, timeout: float | None) -> tuple[np.ndarray, float, int] | None:
        """The newest frame once there is one newer than `seen` (None: ended or timed out)."""
        with self.condition:
            self.condition.wait_for(lambda: self.count > seen or self.ended, timeout=timeout)
            if self.count <= seen:
                return None
            image, stamp = self.latest
            return image, stamp, self.count

    def stop(self) -> None:
        self.stopping.set()
        if not self.keep_latest:  # unblock a reader waiting on a full queue
            try:
                while True:
                    self.queue.get_nowait()
            except queue.Empty:
                pass
        self.join(timeout=2.0)


class CaptureSource(Source):
    """Anything cv2.VideoCapture opens: a camera, a video file or a stream URL."""

    def __init__(
        self,
        capture: cv2.VideoCapture,
        description: str,
        live: bool,
        queue_size: int = 8,
        first_frame_timeout: float = STALL_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.capture = capture
        self.description = description
        self.live = live
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        # what the container says the file holds (files only; streams say nothing useful)
        self.expected_frames = int(count) if not live and count and np.isfinite(count) else 0
        self.first_frame_timeout = first_frame_timeout
        self.stall_timeout = stall_timeout
        self._first: np.ndarray | None = None
        if not live:  # a file that opens but decodes nothing is as bad as a missing one
            ok, image = capture.read()
            if not ok:
                capture.release()
                raise SourceError(
                    f"source={description}: no frame could be decoded; is it a complete video "
                    f"file in a format OpenCV reads (mp4, avi, mkv)?"
                )
            self._first = image
        self.reader = _Reader(capture, keep_latest=live, queue_size=queue_size)
        self.reader.start()

    @property
    def read_seconds(self) -> float:
        return self.reader.read_seconds

    def frames(self) -> Iterator[Frame]:
        return self._live_frames() if self.live else self._file_frames()

    def _file_frames(self) -> Iterator[Frame]:
        index = 0
        image = self._first
        self._first = None
        while image is not None:
            yield Frame(index=index, time=index / self.fps, image=image)
            index += 1
            image = self.reader.next_queued()
        if index < self.expected_frames:
            self.problem = (
                f"source={self.description}: the video ended after {index} of its "
                f"{self.expected_frames} frames (damaged or truncated file); "
                f"{self.expected_frames - index} frames lost"
            )

    def _live_frames(self) -> Iterator[Frame]:
        seen, index = 0, 0
        timeout = self.first_frame_timeout
        while True:
            got = self.reader.next_latest(seen, timeout)
            if got is None:
                if index == 0:
                    raise SourceError(
                        f"source={self.description}: opened, but no frame came within "
                        f"{self.first_frame_timeout:g} s; is another program using it?"
                    )
                if not self.reader.ended:
                    self.problem = (
                        f"source={self.description}: stalled, no new frame for "
                        f"{self.stall_timeout:g} s after {index} frames (stall_timeout=)"
                    )
                return
            image, stamp, seen = got
            yield Frame(index=index, time=stamp, image=image)
            index += 1
            timeout = self.stall_timeout

    def close(self) -> None:
        self.reader.stop()
        self.capture.release()


class ImageFilesSource(Source):
    """One image file or the images of a folder (sorted by name), each a separate still."""

    stills = True
    fps = STILLS_FPS

    def __init__(self, paths: list[Path], description: str) -> None:
        self.paths = paths
        self.description = description

    def frames(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            image = _read_image(path)
            if image is None:
                if len(self.paths) == 1:
                    raise SourceError(f"source={path}: not a readable image (corrupt or empty?)")
                print(f"warning: skipping unreadable image {path}", file=sys.stderr)
                continue
            yield Frame(index=index, time=index / self.fps, image=image, name=path.name)
            index += 1
        if index == 0:
            raise SourceError(f"source={self.description}: none of its images could be read")


def _read_image(path: Path) -> np.ndarray | None:
    """The image at `path` as BGR, or None when it cannot be read or decoded (bytes, then
    decode: cv2.imread cannot open non-ASCII paths)."""
    try:
        return decode_bgr(path.read_bytes())
    except (OSError, ImageDecodeError):
        return None


def _folder_images(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def source_files(spec: int | str | None) -> list[Path]:
    """The files a source reads (a folder: itself and its images); none for cameras and URLs."""
    if isinstance(spec, bool) or spec is None:
        return []
    text = str(spec).strip()
    if not text or isinstance(spec, int) or text.isdigit() or "://" in text:
        return []
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            return [path, *_folder_images(path)]
        except OSError:
            return [path]
    return [path]


def open_source(
    spec: int | str,
    queue_size: int = 8,
    first_frame_timeout: float = STALL_TIMEOUT,
    stall_timeout: float = STALL_TIMEOUT,
) -> Source:
    """Open `spec`: a camera index, a video or image file, a folder of images or a URL."""
    # OpenCV and FFmpeg print their own warnings for bad sources; our error says it once.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if isinstance(spec, bool) or spec is None or str(spec).strip() == "":
        raise SourceError(f"source={spec}: give {_KINDS}")
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        return _open_capture(
            int(text), f"{text} (camera)", True, queue_size, first_frame_timeout, stall_timeout
        )
    if "://" in text:
        return _open_capture(text, text, True, queue_size, first_frame_timeout, stall_timeout)
    path = Path(text).expanduser()
    if path.is_dir():
        try:
            images = _folder_images(path)
        except OSError as error:
            raise SourceError(
                f"source={path}: cannot list this folder ({error.strerror})"
            ) from error
        if not images:
            raise SourceError(
                f"source={path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"
            )
        return ImageFilesSource(images, str(path))
    if not path.is_file():
        raise SourceError(f"source={path}: no such file or folder; give {_KINDS}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], str(path))
    return _open_capture(
        str(path), str(path), False, queue_size, first_frame_timeout, stall_timeout
    )


def _open_capture(
    target: int | str,
    description: str,
    live: bool,
    queue_size: int,
    timeout: float,
    stall_timeout: float = STALL_TIMEOUT,
) -> CaptureSource:
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        if isinstance(target, str) and "://" in target:
            # FFmpeg's own open and read timeouts are far longer than the stall timeout; a
            # silent server should fail (or stall) within the latter.
            milliseconds = int(1000 * max(timeout, stall_timeout))
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds]
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
            capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        else:
            capture = cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        if isinstance(target, int):
            raise SourceError(
                f"source={target}: camera {target} could not be opened; is it connected and "
                f"free? Try another index, or source=PATH for a video file"
            )
        if live:
            raise SourceError(f"source={target}: the stream could not be opened; check the URL")
        raise SourceError(
            f"source={target}: not a readable video; give a video file OpenCV reads "
            f"(mp4, avi, mkv), an image or a folder of images"
        )
    return CaptureSource(capture, description, live, queue_size, timeout, stall_timeout)
