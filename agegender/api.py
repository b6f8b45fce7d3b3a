"""The public Python API: faces in an image, each with a box, an age and a gender.

```python
from agegender import FaceAnalyzer

analyzer = FaceAnalyzer("model.onnx")          # or a .ckpt, or "latest"
faces = analyzer.analyze(rgb_image)             # a still: every face, predicted afresh
stream = analyzer.stream()                      # a video: track ids and steady labels
for rgb_frame in frames:
    faces = stream.process(rgb_frame)
```

Images are RGB uint8 `[H, W, 3]` (what PIL, scikit-image and browsers give); pass `bgr=True`
for OpenCV frames. Everything runs through `live.py`'s `FacePipeline` (detection, cropping,
one batched model call, tracking, smoothing): the API, `live.py` and `serve.py` share one path.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agegender.checkpoint import resolve_checkpoint
from agegender.errors import UserError
from agegender.faces.detectors import Detector, build_detector
from agegender.inference.backends import open_predictor
from agegender.inference.pipeline import FacePipeline, LiveSettings, live_settings
from agegender.inference.predictor import Predictor
from agegender.inference.sources import Frame
from agegender.inference.tracking import Track

# The default of conf/live.yaml's detector group (a test keeps the two equal).
DEFAULT_DETECTOR = "yunet"


class AnalyzerError(UserError):
    """An analyzer option that cannot work."""


class ImageError(UserError, ValueError):
    """An array that is not an image the analyzer can read."""


@dataclass(frozen=True)
class Face:
    """One face: box corners in pixels of the input image, age in years, P(female)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2, inside the image
    age: float
    p_female: float
    track_id: int | None = None  # set by a stream, None for stills

    @property
    def gender(self) -> str:
        return "female" if self.p_female >= 0.5 else "male"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, rounded to what is meaningful."""
        out: dict[str, Any] = {
            "box": [round(v, 1) for v in self.box],
            "age": round(self.age, 1),
            "p_female": round(self.p_female, 4),
            "gender": self.gender,
        }
        if self.track_id is not None:
            out["id"] = self.track_id
        return out


def as_bgr(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """The pipeline's frame format (BGR uint8 [H, W, 3]) from RGB, BGR, grey or RGBA."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an image [H, W, 3], got shape {tuple(image.shape)}")
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR if bgr else cv2.COLOR_RGBA2BGR)
    return np.ascontiguousarray(image) if bgr else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _faces(tracks: list[Track], with_ids: bool, shape: tuple[int, ...]) -> list[Face]:
    """Tracks as Faces, boxes clipped to the image (a box carried between detections, or
    one at the edge, can reach past it)."""
    height, width = shape[:2]
    faces = []
    for track in tracks:
        if track.age is None:  # every shown face has a prediction; guard anyway
            continue
        x1, y1, x2, y2 = (float(v) for v in track.box[:4])
        box = (
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        )
        faces.append(
            Face(box, float(track.age), float(track.p_female), track.id if with_ids else None)
        )
    return faces


# The only calls into the live pipeline (live.py's FacePipeline, open_predictor and
# build_detector) are in this section, so a change there is adapted here alone.


@dataclass
class _Worker:
    """One model and one detector, used by one thread at a time (neither is thread-safe)."""

    predictor: Predictor
    detector: Detector
    lock: threading.Lock = field(default_factory=threading.Lock)
    stills: FacePipeline | None = None


def _open_worker(
    model: Path | Predictor,
    detector: str | Mapping[str, Any] | Detector,
    detector_options: Mapping[str, Any] | None,
    settings: LiveSettings,
    outputs_dir: str | Path,
    device: str,
    threads: int | None,
    runtime: str,
) -> _Worker:
    predictor = (
        model
        if isinstance(model, Predictor)
        else open_predictor(model, outputs_dir, device, threads, runtime)
    )
    if not isinstance(detector, Detector):
        detector = build_detector(detector, **dict(detector_options or {}))
    worker = _Worker(predictor, detector)
    worker.stills = _pipeline(worker, settings)
    return worker


def _pipeline(worker: _Worker, settings: LiveSettings) -> FacePipeline:
    return FacePipeline(worker.predictor, worker.detector, settings)


def _process(
    worker: _Worker, pipeline: FacePipeline, bgr: np.ndarray, index: int, time: float, stills: bool
) -> list[Face]:
    frame = Frame(index=index, time=time, image=bgr)
    with worker.lock:
        tracks = pipeline.process(frame, stills=stills)
    return _faces(tracks, with_ids=not stills, shape=bgr.shape)


class FaceAnalyzer:
    """A model and a face detector: `analyze` for stills, `stream()` for video.

    - `model`: a training checkpoint (`.ckpt`), an exported model (`.onnx`, onnxruntime),
      `"latest"` (newest best checkpoint under `outputs_dir`), or a ready `Predictor`.
    - `runtime`: what runs a checkpoint: `"auto"` (onnxruntime on the CPU, exported in
      memory; torch on an accelerator), `"torch"` or `"onnxruntime"`.
    - `detector`: a name from conf/detector/ (`haar`, `yunet`, `full_frame`) or a `Detector`;
      `detector_options` are that group's keys (e.g. `{"threshold": 0.6}` for yunet).
    - `settings`: live.yaml's pipeline keys (`detect_every`, `smoothing`, ...) or a
      `LiveSettings`.
    - `workers`: copies of the model and detector, so that as many threads can analyze at
      once (each runs under its own lock: the backends are not thread-safe). With `threads=1`,
      one worker per core uses the machine; it needs a model path and a detector name.

    One analyzer may be shared by threads. Decode images outside the call, so decoding
    overlaps other threads' inference.
    """

    def __init__(
        self,
        model: str | Path | Predictor = "latest",
        detector: str | Mapping[str, Any] | Detector = DEFAULT_DETECTOR,
        *,
        detector_options: Mapping[str, Any] | None = None,
        settings: LiveSettings | Mapping[str, Any] | None = None,
        outputs_dir: str | Path = "outputs",
        device: str = "cpu",
        threads: int | None = None,
        workers: int = 1,
        runtime: str = "auto",
    ) -> None:
        workers = int(workers)
        if workers < 1:
            raise AnalyzerError(f"workers must be >= 1, got {workers}")
        if workers > 1 and (isinstance(model, Predictor) or isinstance(detector, Detector)):
            raise AnalyzerError(
                "workers > 1 needs a model path and a detector name (each worker loads its own)"
            )
        self.settings = settings if isinstance(settings, LiveSettings) else live_settings(settings)
        self.model_path: Path | None = None
        if not isinstance(model, Predictor):
            self.model_path = resolve_checkpoint(str(model), outputs_dir)

        source = model if isinstance(model, Predictor) else self.model_path
        self._workers = [
            _open_worker(
                source,
                detector,
                detector_options,
                self.settings,
                outputs_dir,
                device,
                threads,
                runtime,
            )
            for _ in range(workers)
        ]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for each in self._workers:
            self._idle.put(each)
        self._next_stream = itertools.count()

    @property
    def predictor(self) -> Predictor:
        return self._workers[0].predictor

    @property
    def detector(self) -> Detector:
        return self._workers[0].detector

    @property
    def workers(self) -> int:
        return len(self._workers)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FaceAnalyzer:
        """From a composed live.yaml or serve.yaml config (ckpt, detector group, pipeline keys)."""
        return cls(
            cfg["ckpt"],
            cfg["detector"],
            settings=cfg,
            outputs_dir=cfg.get("outputs_dir", "outputs"),
            device=cfg.get("device", "cpu"),
            threads=cfg.get("threads"),
            workers=cfg.get("workers", 1),
            runtime=cfg.get("runtime", "auto"),
        )

    @property
    def info(self) -> dict[str, Any]:
        """What model answers: file name, backend, input size, age range; and the detector."""
        meta = getattr(self.predictor, "meta", {}) or {}
        return {
            "name": self.model_path.name if self.model_path else type(self.predictor).__name__,
            "backend": self.predictor.backend,
            "image_size": int(self.predictor.image_size),
            "age_range": meta.get("age_range"),
            "detector": getattr(self.detector, "name", type(self.detector).__name__),
            "workers": self.workers,
        }

    def analyze(self, image: np.ndarray, *, bgr: bool = False) -> list[Face]:
        """Every face of one still image (RGB uint8 [H, W, 3]; `bgr=True` for OpenCV's order).

        No tracking: each call detects and predicts afresh, so `track_id` is None.
        """
        frame = as_bgr(image, bgr)
        worker = self._idle.get()  # waits for a free worker (a stream may hold its lock)
        try:
            return _process(worker, worker.stills, frame, 0, 0.0, stills=True)
        finally:
            self._idle.put(worker)

    def stream(self) -> FaceStream:
        """A stream of video frames from one source: faces keep track ids, labels are smoothed.

        Each stream has its own tracker; streams take turns on the analyzer's workers.
        """
        return FaceStream(self._workers[next(self._next_stream) % len(self._workers)], self)


class FaceStream:
    """Consecutive frames of one video; `process` returns the faces with their track ids."""

    def __init__(self, worker: _Worker, analyzer: FaceAnalyzer) -> None:
        self._worker = worker
        self._pipeline = _pipeline(worker, analyzer.settings)
        self.frames = 0

    def process(self, image: np.ndarray, *, bgr: bool = False, time: float = 0.0) -> list[Face]:
        """Faces of the next frame (RGB uint8 [H, W, 3]; `bgr=True` for OpenCV's order)."""
        frame = as_bgr(image, bgr)
        index, self.frames = self.frames, self.frames + 1
        return _process(self._worker, self._pipeline, frame, index, time, stills=False)
