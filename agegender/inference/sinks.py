"""Outputs of a live run: annotated video or images, JSONL and CSV of every face.

Each sink writes to a hidden temporary name beside the target, unique to the sink, and
renames it on close(), so a target file is either absent or complete, also when the run is
stopped with q or Ctrl-C (close() runs in a finally block). Text sinks flush every frame.
`check_sink_paths` refuses, before anything is written, outputs that would replace an input
(the checkpoint, the source video, an image of the source folder) or each other.
"""

from __future__ import annotations

import csv
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from agegender.errors import UserError
from agegender.inference.sources import IMAGE_SUFFIXES, Frame, source_files
from agegender.inference.tracking import Track
from agegender.io import check_outputs, remove_stale_temps, temp_path, write_atomic

# container suffix -> FourCC that the opencv-python wheels can write
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


class SinkError(UserError):
    """An output that cannot be written."""


def part_path(path: Path) -> Path:
    """Hidden temporary name beside `path`, unique to this writer, keeping its suffix
    (OpenCV picks the container from it)."""
    return temp_path(path, keep_suffix=True)


def _prepare(path: str | Path, option: str) -> Path:
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SinkError(f"{option}={path}: cannot create its folder ({error.strerror})") from error
    if path.is_dir():
        raise SinkError(f"{option}={path}: is a folder; give a file name")
    remove_stale_temps(path.parent, f".{path.name}.tmp-*")  # left by a killed earlier run
    return path


class Sink(ABC):
    needs_pixels = False  # whether `annotated` must carry the drawn overlay

    @abstractmethod
    def write(self, frame: Frame, annotated: np.ndarray, faces: list[Track]) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the file and move it to its final name (safe to call twice)."""

    def discard(self) -> None:  # noqa: B027 - sinks that write nothing early need nothing
        """Drop what was written (the run never started)."""


class VideoSink(Sink):
    """Annotated frames as a video at the source's frame rate and the first frame's size."""

    needs_pixels = True

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = _prepare(path, "save")
        codec = VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise SinkError(
                f"save={self.path}: unknown video type; use one of {', '.join(VIDEO_CODECS)} "
                f"(or an image name / folder for image sources)"
            )
        self.fourcc = cv2.VideoWriter_fourcc(*codec)
        self.fps = float(fps)
        self.temp = part_path(self.path)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: Frame, annotated: np.ndarray, faces: list[Track]) -> None:
        if self.writer is None:
            self.size = (annotated.shape[1], annotated.shape[0])
            self.writer = cv2.VideoWriter(str(self.temp), self.fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise SinkError(f"save={self.path}: OpenCV cannot write this video type here")
        if (annotated.shape[1], annotated.shape[0]) != self.size:  # stills of mixed sizes
            annotated = cv2.resize(annotated, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(annotated)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self.temp.unlink(missing_ok=True)


class ImageSink(Sink):
    """Annotated stills: to one image file, or into a folder under each source file's name."""

    needs_pixels = True

    def __init__(self, path: str | Path) -> None:
        path = Path(path).expanduser()
        self.single = path.suffix.lower() in IMAGE_SUFFIXES
        if self.single:
            self.path = _prepare(path, "save")
        else:
            self.path = path
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SinkError(f"save={path}: cannot create this folder") from error

    def write(self, frame: Frame, annotated: np.ndarray, faces: list[Track]) -> None:
        if self.single:
            target = self.path
        else:
            target = self.path / (frame.name or f"frame_{frame.index:06d}.png")
        ok, data = cv2.imencode(target.suffix or ".png", annotated)
        if not ok:
            raise SinkError(f"save={target}: OpenCV cannot encode this image type")
        write_atomic(target, data.tobytes())

    def close(self) -> None:
        pass


class _TextSink(Sink):
    option = ""

    def __init__(self, path: str | Path) -> None:
        self.path = _prepare(path, self.option)
        self.temp = part_path(self.path)
        self.file: IO[str] | None = self.temp.open("w", encoding="utf-8", newline="")

    def close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None
            os.replace(self.temp, self.path)

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.temp.unlink(missing_ok=True)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


class JsonlSink(_TextSink):
    """One JSON object per face per frame: frame, time, track, box, age, p_female (raw too)."""

    option = "jsonl"

    def write(self, frame: Frame, annotated: np.ndarray, faces: list[Track]) -> None:
        assert self.file is not None
        for face in faces:
            raw = face.raw or (None, None)
            record = {
                "frame": frame.index,
                "time": round(frame.time, 4),
                "track": face.id,
                "box": face.box.as_ints(),
                "age": _rounded(face.age, 2),
                "p_female": _rounded(face.p_female, 4),
                "age_raw": _rounded(raw[0], 2),
                "p_female_raw": _rounded(raw[1], 4),
                "fresh": face.fresh,  # the model ran on this face in this frame
            }
            if frame.name:
                record["file"] = frame.name
            self.file.write(json.dumps(record) + "\n")
        self.file.flush()


class CsvSink(_TextSink):
    """One row per face: file (for image sources), frame, face, box, age, p_female, gender."""

    option = "csv"
    COLUMNS = ("file", "frame", "time", "face", "track", "x1", "y1", "x2", "y2")
    COLUMNS += ("age", "p_female", "gender")

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        assert self.file is not None
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.COLUMNS)

    def write(self, frame: Frame, annotated: np.ndarray, faces: list[Track]) -> None:
        for number, face in enumerate(faces):
            p_female = face.p_female if face.p_female is not None else float("nan")
            self.writer.writerow(
                (
                    frame.name,
                    frame.index,
                    round(frame.time, 4),
                    number,
                    face.id,
                    *face.box.as_ints(),
                    _rounded(face.age, 2),
                    _rounded(p_female, 4),
                    "F" if p_female >= 0.5 else "M",
                )
            )
        assert self.file is not None
        self.file.flush()


def open_sinks(
    save: str | None, jsonl: str | None, csv_path: str | None, fps: float, stills: bool
) -> list[Sink]:
    """The sinks a run asked for. `save` is a video (.mp4, .avi, ...) for any source; for
    image sources it may also be an image name (one image) or a folder."""
    sinks: list[Sink] = []
    try:
        if save:
            suffix = Path(save).suffix.lower()
            if suffix in VIDEO_CODECS:
                sinks.append(VideoSink(save, fps))
            elif stills:
                sinks.append(ImageSink(save))
            else:
                raise SinkError(
                    f"save={save}: a video source needs a video name ({', '.join(VIDEO_CODECS)})"
                )
        if jsonl:
            sinks.append(JsonlSink(jsonl))
        if csv_path:
            sinks.append(CsvSink(csv_path))
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise
    return sinks


def _is_image_output(save: str | Path, stills: bool) -> bool:
    return stills and Path(save).suffix.lower() not in VIDEO_CODECS


def check_sink_paths(
    save: str | None,
    jsonl: str | None,
    csv_path: str | None,
    source: int | str | None,
    checkpoint: str | Path | None,
) -> None:
    """Refuse outputs that would replace the checkpoint, the source (a video, an image, an
    image of a source folder, the folder itself) or another output; one line, before any
    work starts."""
    inputs_source = source_files(source)
    stills = any(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in inputs_source)
    outputs: dict[str, list[Path]] = {}
    if save:
        target = Path(save).expanduser()
        if _is_image_output(save, stills) and target.suffix.lower() not in IMAGE_SUFFIXES:
            # a folder of annotated images, one per source image, under the source's names
            names = [
                Path(p).name for p in inputs_source if Path(p).suffix.lower() in IMAGE_SUFFIXES
            ]
            outputs["save"] = [target, *(target / name for name in names)]
        else:
            outputs["save"] = [target]
    if jsonl:
        outputs["jsonl"] = [Path(jsonl)]
    if csv_path:
        outputs["csv"] = [Path(csv_path)]
    check_outputs(outputs, {"ckpt": checkpoint, "source": inputs_source})
