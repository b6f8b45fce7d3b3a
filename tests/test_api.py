"""The public API: FaceAnalyzer over live.py's FacePipeline, stills and streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from agegender import Face, FaceAnalyzer
from agegender.api import DEFAULT_DETECTOR, ImageError, live_settings
from agegender.faces.detectors import Box, Detector, build_detector
from agegender.inference.pipeline import FacePipeline, LiveSettings
from agegender.inference.sources import Frame
from tests.serving import face_frame, iou

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def analyzer(brief_onnx: Path) -> FaceAnalyzer:
    return FaceAnalyzer(brief_onnx, threads=1)


def test_import_agegender_stays_cheap() -> None:
    code = "import sys, agegender; print('cv2' in sys.modules or 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr


def test_analyze_finds_the_face_in_rgb_and_bgr(analyzer: FaceAnalyzer) -> None:
    bgr, truth = face_frame(300, 150)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    (face,) = analyzer.analyze(rgb)
    assert isinstance(face, Face) and face.track_id is None
    assert iou(face.box, truth) > 0.5
    assert 1 <= face.age <= 100 and 0 <= face.p_female <= 1
    assert face.gender == ("female" if face.p_female >= 0.5 else "male")
    assert analyzer.analyze(bgr, bgr=True) == [face]
    # the colour order matters to the model: swapped channels are another input
    assert analyzer.analyze(bgr)[0].age != pytest.approx(face.age, abs=1e-6)


def test_analyze_is_the_live_pipeline(analyzer: FaceAnalyzer) -> None:
    """Same numbers as FacePipeline run directly on the frame: one code path."""
    bgr, _ = face_frame(120, 200)
    direct = FacePipeline(analyzer.predictor, build_detector(DEFAULT_DETECTOR), LiveSettings())
    (track,) = direct.process(Frame(0, 0.0, bgr), stills=True)
    (face,) = analyzer.analyze(bgr, bgr=True)
    assert face.box == tuple(track.box[:4])
    assert (face.age, face.p_female) == pytest.approx((track.age, track.p_female))


def test_stills_are_independent(analyzer: FaceAnalyzer) -> None:
    first = analyzer.analyze(face_frame(100, 100)[0], bgr=True)
    analyzer.analyze(face_frame(400, 250)[0], bgr=True)
    assert analyzer.analyze(face_frame(100, 100)[0], bgr=True) == first
    assert analyzer.analyze(np.zeros((240, 320, 3), np.uint8)) == []


def test_stream_keeps_ids_and_smooths(analyzer: FaceAnalyzer) -> None:
    stream = analyzer.stream()
    other = analyzer.stream()
    ids, ages = set(), []
    for index in range(30):
        bgr, truth = face_frame(100 + 8 * index, 150)
        (face,) = stream.process(bgr, bgr=True)
        assert iou(face.box, truth) > 0.4, index
        ids.add(face.track_id)
        ages.append(face.age)
    assert len(ids) == 1 and None not in ids
    # another stream has its own tracker: it starts from id 1 with no history
    (fresh,) = other.process(face_frame(100, 150)[0], bgr=True)
    assert fresh.track_id == 1
    assert stream.frames == 30 and other.frames == 1
    assert fresh.to_dict()["id"] == 1 and "id" not in analyzer.analyze(bgr, bgr=True)[0].to_dict()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((0, 10, 3), np.uint8), "shape"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_images_are_one_clear_error(analyzer: FaceAnalyzer, image, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        analyzer.analyze(image)


def test_grey_and_rgba_are_accepted(analyzer: FaceAnalyzer) -> None:
    bgr, truth = face_frame(200, 150)
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    assert iou(analyzer.analyze(rgba)[0].box, truth) > 0.5
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert len(analyzer.analyze(grey)) == 1


def test_info_names_model_backend_and_detector(analyzer: FaceAnalyzer, brief_onnx: Path) -> None:
    info = analyzer.info
    assert info["name"] == brief_onnx.name and info["backend"] == "onnxruntime"
    assert info["image_size"] == 64 and info["detector"] == DEFAULT_DETECTOR


def test_settings_come_from_live_keys() -> None:
    settings = live_settings({"detect_every": 5, "smoothing": 0.2, "source": 0, "port": 1})
    assert settings.detect_every == 5 and settings.smoothing == 0.2 and settings.hold == 1


def test_serve_and_live_configs_share_detector_and_pipeline_defaults() -> None:
    live = OmegaConf.load(REPO / "conf" / "live.yaml")
    serve = OmegaConf.load(REPO / "conf" / "serve.yaml")

    def detector(cfg) -> str:
        defaults = OmegaConf.to_container(cfg.defaults)
        (choice,) = [d["detector"] for d in defaults if isinstance(d, dict) and "detector" in d]
        return choice

    assert detector(serve) == detector(live) == DEFAULT_DETECTOR
    # browser frames arrive at uneven intervals: serve detects on every frame
    assert serve.detect_every == 1
    for key in [*LiveSettings.__dataclass_fields__, "ckpt", "device", "threads", "outputs_dir"]:
        if key != "detect_every":
            assert serve[key] == live[key], key


def test_from_config_builds_the_configured_detector(brief_onnx: Path) -> None:
    cfg = {
        "ckpt": str(brief_onnx),
        "detector": {"name": "full_frame"},
        "detect_every": 2,
        "threads": 1,
    }
    analyzer = FaceAnalyzer.from_config(cfg)
    assert analyzer.info["detector"] == "full_frame" and analyzer.settings.detect_every == 2
    (face,) = analyzer.analyze(np.zeros((48, 64, 3), np.uint8))
    assert face.box == (0.0, 0.0, 64.0, 48.0)


def test_workers_analyze_at_once_with_right_answers(brief_onnx: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    analyzer = FaceAnalyzer(brief_onnx, workers=2, threads=1)
    assert analyzer.workers == 2 and analyzer.info["workers"] == 2
    frames = [face_frame(30 + 40 * i, 60 + 20 * i)[0] for i in range(8)]
    expected = [FaceAnalyzer(brief_onnx).analyze(f, bgr=True) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: analyzer.analyze(f, bgr=True), frames * 3))
    assert got == expected * 3
    # streams take turns on the workers, each with its own tracker
    streams = [analyzer.stream() for _ in range(3)]
    assert [s._worker for s in streams] == [*analyzer._workers, analyzer._workers[0]]
    assert [s.process(frames[0], bgr=True)[0].track_id for s in streams] == [1, 1, 1]


def test_workers_need_a_path_and_a_name(analyzer: FaceAnalyzer) -> None:
    from agegender.api import AnalyzerError

    with pytest.raises(AnalyzerError, match="workers > 1"):
        FaceAnalyzer(analyzer.predictor, workers=2)
    with pytest.raises(AnalyzerError, match="workers must be"):
        FaceAnalyzer(analyzer.predictor, workers=0)


def test_latest_checkpoint_on_torch_agrees_with_its_onnx_export(
    brief_run: Path, analyzer: FaceAnalyzer
) -> None:
    outputs = brief_run.parents[1]
    torch_analyzer = FaceAnalyzer("latest", outputs_dir=outputs, threads=1, runtime="torch")
    assert torch_analyzer.info["backend"] == "torch"
    assert FaceAnalyzer("latest", outputs_dir=outputs, threads=1).info["backend"] == "onnxruntime"
    assert torch_analyzer.model_path == brief_run / "checkpoints" / "best.ckpt"
    bgr, truth = face_frame(200, 120)
    (face,) = torch_analyzer.analyze(bgr, bgr=True)
    (exported,) = analyzer.analyze(bgr, bgr=True)
    assert face.box == exported.box and iou(face.box, truth) > 0.5
    assert face.age == pytest.approx(exported.age, abs=0.05)
    assert face.p_female == pytest.approx(exported.p_female, abs=1e-3)


def test_boxes_are_clipped_to_the_image(analyzer: FaceAnalyzer) -> None:
    class Overhanging(Detector):
        name = "overhanging"

        def detect(self, frame: np.ndarray) -> list[Box]:
            return [Box(-20, -10, 50, 60), Box(30, 20, 90, 75)]

    clipped = FaceAnalyzer(analyzer.predictor, Overhanging())
    faces = clipped.analyze(np.zeros((70, 80, 3), np.uint8))
    assert [face.box for face in faces] == [(0, 0, 50, 60), (30, 20, 80, 70)]
