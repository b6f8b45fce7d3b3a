"""Sinks: complete files only (temp name, renamed on close), right content."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.faces.detectors import Box
from agegender.inference.sinks import (
    CsvSink,
    ImageSink,
    JsonlSink,
    SinkError,
    VideoSink,
    open_sinks,
)
from agegender.inference.sources import Frame
from agegender.inference.tracking import Track


def face(track_id: int = 1) -> Track:
    return Track(id=track_id, box=Box(1, 2, 11, 12), raw=(31.0, 0.8), smooth=(30.0, 0.7))


def frame(index: int = 0, name: str = "") -> Frame:
    return Frame(index=index, time=index / 25, image=np.zeros((48, 64, 3), np.uint8), name=name)


def test_jsonl_appears_only_when_closed(tmp_path: Path) -> None:
    path = tmp_path / "out" / "faces.jsonl"
    sink = JsonlSink(path)
    sink.write(frame(0), frame().image, [face(1), face(2)])
    sink.write(frame(1), frame().image, [])
    assert not path.exists() and sink.temp.exists()
    sink.close()
    sink.close()  # twice is fine
    assert not sink.temp.exists()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["track"] for r in records] == [1, 2]
    assert records[0] == {
        "frame": 0,
        "time": 0.0,
        "track": 1,
        "box": [1, 2, 11, 12],
        "age": 30.0,
        "p_female": 0.7,
        "age_raw": 31.0,
        "p_female_raw": 0.8,
        "fresh": False,
    }


def test_csv_has_one_row_per_face(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "faces.csv")
    sink.write(frame(0, "a.jpg"), frame().image, [face(1), face(2)])
    sink.close()
    rows = list(csv.DictReader((tmp_path / "faces.csv").open()))
    assert [(r["file"], r["face"], r["track"]) for r in rows] == [
        ("a.jpg", "0", "1"),
        ("a.jpg", "1", "2"),
    ]
    assert rows[0]["gender"] == "F"
    assert rows[0]["age"] == "30.0"


def test_video_sink_writes_every_frame_at_the_source_size(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, fps=25)
    for index in range(7):
        sink.write(frame(index), frame().image, [])
    sink.close()
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        64,
        48,
    )
    capture.release()


def test_image_sink_writes_a_folder_of_annotated_images(tmp_path: Path) -> None:
    sink = ImageSink(tmp_path / "annotated")
    sink.write(frame(0, "a.jpg"), frame().image, [])
    sink.close()
    assert cv2.imread(str(tmp_path / "annotated" / "a.jpg")).shape == (48, 64, 3)


def test_open_sinks_rejects_an_image_name_for_a_video(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="video name"):
        open_sinks(str(tmp_path / "x.png"), None, None, fps=25, stills=False)


def test_a_failing_sink_leaves_no_partial_files(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(SinkError, match="is a folder"):
        open_sinks(None, str(tmp_path / "a.jsonl"), str(tmp_path / "taken"), 25, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
