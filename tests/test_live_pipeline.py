"""The live loop in-process: crops, one batch per frame, smoothing, stills, outputs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.checkpoint import CheckpointError, load_checkpoint
from agegender.export.parity import parity_batch
from agegender.faces.crop import Framing, box_crop
from agegender.faces.detectors import Box, Detector, FullFrameDetector
from agegender.inference.backends import open_predictor
from agegender.inference.pipeline import (
    FacePipeline,
    LiveError,
    LiveSettings,
    crop_faces,
    resolve_display,
    run,
)
from agegender.inference.predictor import Predictor
from agegender.inference.sinks import JsonlSink
from agegender.inference.sources import Frame, Source


class FakePredictor(Predictor):
    """Records batch sizes; ages are noisy around 30 so smoothing has work to do."""

    backend = "fake"
    meta: dict = {}

    def __init__(self, image_size: int = 32, noise: float = 5.0) -> None:
        self.image_size = image_size
        self.batches: list[int] = []
        self.rng = np.random.default_rng(0)
        self.noise = noise

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        ages = 30 + self.rng.normal(0, self.noise, len(batch))
        return np.stack([ages, np.full(len(batch), 0.8)], 1).astype(np.float32)


class FixedBoxes(Detector):
    name = "fixed"

    def __init__(self, boxes: list[Box]) -> None:
        self.boxes = boxes
        self.calls = 0

    def detect(self, frame: np.ndarray) -> list[Box]:
        self.calls += 1
        return list(self.boxes)


class ListSource(Source):
    description = "frames"
    fps = 25.0

    def __init__(self, count: int, stills: bool = False) -> None:
        self.count = count
        self.stills = stills

    def frames(self) -> Iterator[Frame]:
        for index in range(self.count):
            yield Frame(index, index / 25, np.zeros((120, 160, 3), np.uint8))


def test_box_crop_is_centred_and_padded_at_the_edge() -> None:
    frame = np.full((100, 100, 3), 200, np.uint8)
    inside = box_crop(frame, Box(40, 40, 60, 60), margin=0.5)
    assert inside.shape == (30, 30, 3) and inside.min() == 200
    edge = box_crop(frame, Box(0, 0, 20, 20), margin=1.0)
    assert edge.shape == (40, 40, 3)
    assert edge[:10, :10].max() == 0 and edge[20:, 20:].min() == 200  # face stays centred


def test_crops_are_rgb_at_the_model_size() -> None:
    frame = np.zeros((50, 50, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    framing = Framing(align=False, box_margin=0.2)
    (crop,) = crop_faces(frame, [Box(10, 10, 40, 40)], framing, size=16)
    assert crop.shape == (16, 16, 3)
    assert tuple(crop[8, 8]) == (0, 0, 255)


def test_all_faces_of_a_frame_go_through_the_model_in_one_batch() -> None:
    predictor = FakePredictor()
    boxes = [Box(0, 0, 30, 30), Box(50, 0, 80, 30), Box(100, 50, 130, 80)]
    settings = LiveSettings(detect_every=1, predict_every=1, tta=None)
    pipeline = FacePipeline(predictor, FixedBoxes(boxes), settings)
    summary = run(ListSource(5), pipeline)
    assert predictor.batches == [3] * 5
    assert summary.frames == 5 and summary.faces == 15


def test_flip_tta_sends_each_face_and_its_mirror_image_in_the_same_batch() -> None:
    predictor = FakePredictor()
    boxes = [Box(0, 0, 30, 30), Box(50, 0, 80, 30), Box(100, 50, 130, 80)]
    settings = LiveSettings(detect_every=1, predict_every=1, tta="flip")
    run(ListSource(2), FacePipeline(predictor, FixedBoxes(boxes), settings))
    assert predictor.batches == [6, 6]


def test_detect_every_and_predict_every_cut_the_work() -> None:
    predictor = FakePredictor()
    detector = FixedBoxes([Box(0, 0, 30, 30)])
    settings = LiveSettings(detect_every=3, predict_every=2)
    run(ListSource(12), FacePipeline(predictor, detector, settings))
    assert detector.calls == 4
    assert len(predictor.batches) == 6


def shown_ages(smoothing: float) -> np.ndarray:
    ages = []
    pipeline = FacePipeline(
        FakePredictor(), FullFrameDetector(), LiveSettings(1, 1, 1, smoothing=smoothing)
    )
    run(ListSource(100), pipeline, observer=lambda frame, faces: ages.append(faces[0].age))
    return np.array(ages)


def test_smoothing_lowers_the_frame_to_frame_change_of_the_shown_age() -> None:
    raw_change = np.abs(np.diff(shown_ages(0.0))).mean()
    smooth_change = np.abs(np.diff(shown_ages(0.6))).mean()
    assert smooth_change < 0.5 * raw_change


def test_stills_are_each_detected_and_predicted_afresh() -> None:
    predictor = FakePredictor()
    detector = FixedBoxes([Box(0, 0, 30, 30)])
    ids = []
    settings = LiveSettings(detect_every=5, predict_every=5, tta=None)
    pipeline = FacePipeline(predictor, detector, settings)
    run(ListSource(4, stills=True), pipeline, observer=lambda f, faces: ids.append(faces[0].id))
    assert detector.calls == 4 and predictor.batches == [1] * 4
    assert len(set(ids)) == 4  # no tracking across unrelated images


def test_outputs_are_complete_when_interrupted(tmp_path: Path) -> None:
    class Interrupted(ListSource):
        def frames(self) -> Iterator[Frame]:
            yield from super().frames()
            raise KeyboardInterrupt

    sink = JsonlSink(tmp_path / "faces.jsonl")
    pipeline = FacePipeline(FakePredictor(), FullFrameDetector())
    summary = run(Interrupted(6), pipeline, [sink])
    assert summary.stopped == "interrupt"
    assert len((tmp_path / "faces.jsonl").read_text().splitlines()) == 6


def test_an_error_mid_run_leaves_no_output_files(tmp_path: Path) -> None:
    class Broken(ListSource):
        def frames(self) -> Iterator[Frame]:
            yield from super().frames()
            raise RuntimeError("camera unplugged")

    sink = JsonlSink(tmp_path / "faces.jsonl")
    with pytest.raises(RuntimeError, match="unplugged"):
        run(Broken(3), FacePipeline(FakePredictor(), FullFrameDetector()), [sink])
    assert list(tmp_path.iterdir()) == []


def test_settings_are_checked() -> None:
    with pytest.raises(LiveError, match="detect_every"):
        LiveSettings(detect_every=0)
    with pytest.raises(LiveError, match="smoothing"):
        LiveSettings(smoothing=1.5)


class CropRecorder(FakePredictor):
    """A predictor whose checkpoint records a framing; keeps every batch it is given."""

    def __init__(self, crop_meta: dict) -> None:
        super().__init__(image_size=128)
        self.meta = {"crop": crop_meta}
        self.seen: list[np.ndarray] = []

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(batch.copy())
        return super().predict_batch(batch)


def test_match_source_false_leaves_out_source_matching_and_nothing_else() -> None:
    """live/serve's match_source=false: a sharp face goes to the model as sharp as it comes,
    framed exactly as a checkpoint trained without source matching would frame it."""
    from skimage import data

    from agegender.faces.detectors import build_detector
    from agegender.faces.photo import PhotoCrop, main_face

    portrait = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # eyes ~45 px apart
    face = main_face(build_detector("yunet").detect_still(portrait), *portrait.shape[:2])
    assert face is not None and face.landmarks is not None

    def model_input(crop_meta: dict, **options) -> np.ndarray:
        predictor = CropRecorder(crop_meta)
        settings = LiveSettings(detect_every=1, predict_every=1, tta=None, **options)
        FacePipeline(predictor, FixedBoxes([face]), settings).process(Frame(0, 0.0, portrait))
        (batch,) = predictor.seen
        return batch

    matching = PhotoCrop(Framing(source_eye_px=20.0)).to_meta()
    plain = PhotoCrop(Framing()).to_meta()
    matched = model_input(matching)
    unmatched = model_input(matching, match_source=False)
    assert np.array_equal(unmatched, model_input(plain))
    assert not np.allclose(matched, unmatched, atol=0.05)
    with pytest.raises(LiveError, match="match_source"):
        LiveSettings(match_source="no")


def test_display_auto_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert resolve_display("auto") is False
    with pytest.raises(LiveError, match="no screen"):
        resolve_display(True)
    monkeypatch.setenv("DISPLAY", ":0")
    assert resolve_display("auto") is True
    assert resolve_display(True) is True
    assert resolve_display(False) is False
    with pytest.raises(LiveError, match="display"):
        resolve_display("sometimes")


def test_ckpt_latest_picks_the_newest_best_checkpoint(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    best = tmp_path / "frozen" / "run1" / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True)
    shutil.copy(untrained_checkpoint, best)
    with pytest.raises(CheckpointError, match="finished run"):  # no metrics.json: unfinished
        open_predictor("latest", tmp_path)
    (best.parents[1] / "metrics.json").write_text('{"phase": "frozen"}')
    predictor = open_predictor("latest", tmp_path)
    assert predictor.backend == "onnxruntime" and predictor.image_size == 64  # a CPU: auto
    assert open_predictor("latest", tmp_path, runtime="torch").backend == "torch"
    with pytest.raises(CheckpointError, match="no such file"):
        open_predictor(tmp_path / "missing.onnx", tmp_path)


class FaceFrames(Source):
    """Real training faces as frames (BGR), each a different person."""

    description = "faces"
    fps = 25.0

    def __init__(self, faces: np.ndarray) -> None:
        self.images = [np.ascontiguousarray(face.transpose(1, 2, 0)[..., ::-1]) for face in faces]

    def frames(self) -> Iterator[Frame]:
        for index, image in enumerate(self.images):
            yield Frame(index, index / 25, image.copy())


def test_an_exported_onnx_model_runs_the_same_pipeline(
    brief_run: Path, varied_checkpoint: Path, varied_onnx: Path
) -> None:
    checkpoint = varied_checkpoint
    faces, _ = parity_batch(load_checkpoint(brief_run / "checkpoints" / "best.ckpt").meta, 12)
    onnx = open_predictor(varied_onnx)
    torch_predictor = open_predictor(checkpoint, runtime="torch")
    assert onnx.backend == "onnxruntime" and torch_predictor.backend == "torch"
    outputs: dict[str, list[tuple[float, float]]] = {"onnxruntime": [], "torch": []}
    # Every frame predicted afresh, unsmoothed, so each row is the model's answer to one face.
    settings = LiveSettings(detect_every=1, predict_every=1, smoothing=0.0)
    for predictor in (onnx, torch_predictor):
        rows = outputs[predictor.backend]
        pipeline = FacePipeline(predictor, FullFrameDetector(), settings)
        run(
            FaceFrames(faces),
            pipeline,
            observer=lambda frame, found, r=rows: r.append((found[0].age, found[0].p_female)),
        )
    got, expected = np.array(outputs["onnxruntime"]), np.array(outputs["torch"])
    assert got.shape == expected.shape == (12, 2)
    np.testing.assert_allclose(got[:, 0], expected[:, 0], atol=0.05)
    np.testing.assert_allclose(got[:, 1], expected[:, 1], atol=1e-4)
    # The answers vary far more than the tolerance: a graph ignoring its input would fail.
    assert np.ptp(expected[:, 0]) > 20 * 0.05 and np.ptp(expected[:, 1]) > 100 * 1e-4


def test_q_in_the_window_stops_the_run_with_complete_outputs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shown = []
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    sink = JsonlSink(tmp_path / "faces.jsonl")
    pipeline = FacePipeline(FakePredictor(), FullFrameDetector())
    summary = run(ListSource(10), pipeline, [sink], display=True)
    assert summary.stopped == "quit" and summary.frames == 3 and len(shown) == 3
    assert len((tmp_path / "faces.jsonl").read_text().splitlines()) == 3


def test_predictions_of_many_faces_spread_over_frames() -> None:
    predictor = FakePredictor()
    boxes = [Box(60 * i, 0, 60 * i + 40, 40) for i in range(3)]
    settings = LiveSettings(detect_every=1, predict_every=3, tta=None)
    run(ListSource(30), FacePipeline(predictor, FixedBoxes(boxes), settings))
    # new faces at once on frame 0; from frame 3 on, one face per frame in turn, so each
    # face is still refreshed every 3 frames
    assert predictor.batches == [3] + [1] * 27


class CountingDetector(Detector):
    """Finds the boxes present at each frame; records full scans and region searches."""

    name = "counting"

    def __init__(self, boxes_at) -> None:
        self.boxes_at = boxes_at
        self.frame = 0
        self.calls: list[tuple[int, str]] = []

    def detect(self, frame: np.ndarray) -> list[Box]:
        self.calls.append((self.frame, "scan"))
        return self.boxes_at(self.frame)

    def detect_near(self, frame: np.ndarray, boxes) -> list[Box]:
        self.calls.append((self.frame, "near"))
        return [b for b in self.boxes_at(self.frame) if any(b.iou(k) > 0 for k in boxes)]


def run_counting(detector: CountingDetector, frames: int, settings: LiveSettings) -> list:
    seen = []

    def observe(frame: Frame, faces: list) -> None:
        seen.append(sorted(t.id for t in faces))
        detector.frame += 1

    run(ListSource(frames), FacePipeline(FakePredictor(), detector, settings), observer=observe)
    return seen


def test_full_scans_every_few_detections_and_regions_in_between() -> None:
    detector = CountingDetector(lambda frame: [Box(10, 10, 40, 40)])
    run_counting(detector, 12, LiveSettings(detect_every=2, scan_every=3))
    assert detector.calls == [
        (0, "scan"), (2, "near"), (4, "near"), (6, "scan"), (8, "near"), (10, "near"),
    ]  # fmt: skip


def test_a_new_face_is_found_by_the_next_full_scan() -> None:
    def boxes_at(frame: int) -> list[Box]:
        first = Box(10, 10, 40, 40)
        return [first, Box(100, 60, 130, 90)] if frame >= 4 else [first]

    detector = CountingDetector(boxes_at)
    seen = run_counting(detector, 16, LiveSettings(detect_every=2, scan_every=3))
    assert seen[5] == [1] and seen[6] == [1, 2]  # frame 6 is the next full scan
    assert seen[-1] == [1, 2]
