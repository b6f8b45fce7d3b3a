"""Face detectors: a BGR frame in, face boxes (with landmarks where known) in frame pixels out.

Each detector is a class here and a file in conf/detector/ whose `_target_` names the class
and whose keys are its options: `yunet` (libfacedetection's YuNet through the `yuface`
package: boxes and five landmarks, any pose), `haar` (OpenCV's bundled frontal-face cascade
on a downscaled grey frame, no landmarks) and `full_frame` (the whole frame is one face). A new
detector is a class (anywhere importable) and a YAML file. `build_detector(name, **options)`
builds one by its file's name (checkpoints record the face path's detector by name);
`register_detector` adds a factory by name without a file (tests, notebooks).

`detect` serves video (the detector's own working width, for speed); `detect_still` serves
photographs, where every face counts more than time: full resolution, with a border so that a
face cut by the photograph's edge is still found.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from agegender.configs import group_options, load_option
from agegender.errors import UserError
from agegender.faces.yunet_native import load_yunet


class DetectorError(UserError):
    """An unknown detector, a missing optional package or a bad detector option."""


class Box(NamedTuple):
    """A face box in frame pixels: corners (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    # five (x, y) points, flattened: right eye, left eye, nose tip, right and left mouth corner
    landmarks: tuple[float, ...] | None = None

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def iou(self, other: Box) -> float:
        """Intersection over union of two boxes (0 when they do not touch)."""
        width = min(self.x2, other.x2) - max(self.x1, other.x1)
        height = min(self.y2, other.y2) - max(self.y1, other.y1)
        if width <= 0 or height <= 0:
            return 0.0
        inter = width * height
        return inter / (self.area + other.area - inter)

    def as_ints(self) -> list[int]:
        return [round(self.x1), round(self.y1), round(self.x2), round(self.y2)]

    def scaled(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Box:
        """The box (and its landmarks) in a frame scaled by `factor`, then shifted by (dx, dy)."""
        points = None
        if self.landmarks is not None:
            xy = np.asarray(self.landmarks, dtype=np.float64).reshape(-1, 2) * factor
            points = tuple((xy + (dx, dy)).reshape(-1).tolist())
        return Box(
            self.x1 * factor + dx,
            self.y1 * factor + dy,
            self.x2 * factor + dx,
            self.y2 * factor + dy,
            self.score,
            points,
        )

    def carry_landmarks(self, source: Box) -> Box:
        """This box with `source`'s landmarks moved along: the same face, tracked from where
        `source` detected it to here (shifted with the centre, scaled with the size)."""
        if source.landmarks is None:
            return self
        factor = max(self.width, self.height) / max(source.width, source.height, 1e-6)
        (cx, cy), (sx, sy) = self.center, source.center
        xy = (np.asarray(source.landmarks, dtype=np.float64).reshape(-1, 2) - (sx, sy)) * factor
        return self._replace(landmarks=tuple((xy + (cx, cy)).reshape(-1).tolist()))


class Detector(ABC):
    """Finds faces in a BGR uint8 frame; boxes are in the frame's own pixels."""

    name: str

    @abstractmethod
    def detect(self, frame: np.ndarray) -> list[Box]: ...

    def detect_near(self, frame: np.ndarray, boxes: Sequence[Box]) -> list[Box]:
        """Faces near known boxes (the live loop's cheap refresh between full scans).

        Detectors that cannot search regions scan the whole frame, which is never wrong.
        """
        return self.detect(frame)

    def detect_still(self, frame: np.ndarray) -> list[Box]:
        """Every face of a photograph, where finding them matters more than speed."""
        return self.detect(frame)


class FullFrameDetector(Detector):
    """The whole frame is one face: the original behaviour (fill the frame with your face)."""

    name = "full_frame"

    def detect(self, frame: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        return [Box(0.0, 0.0, float(width), float(height))]


def _downscale_factor(frame: np.ndarray, width: int) -> float:
    """Factor that brings the frame to `width` pixels wide; never enlarges."""
    return min(1.0, width / frame.shape[1]) if width > 0 else 1.0


def dedupe(boxes: list[Box], iou: float = 0.5) -> list[Box]:
    """Drop boxes that overlap an earlier one (the same face found from two regions)."""
    kept: list[Box] = []
    for box in boxes:
        if all(box.iou(other) < iou for other in kept):
            kept.append(box)
    return kept


class HaarDetector(Detector):
    """OpenCV's frontal-face Haar cascade on a grey frame downscaled to `width` pixels.

    A small working width keeps detection cheap and still finds faces down to about
    2 * min_size pixels of the working frame. `detect_near` searches only squares `near` times
    a known face's size around it, at the same scale, which costs far less than a full scan.
    """

    name = "haar"

    def __init__(
        self,
        width: int = 320,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        equalize: bool = False,
        cascade: str | Path | None = None,
        near: float = 2.0,
    ) -> None:
        path = Path(cascade) if cascade else _bundled_cascade()
        if not path.is_file():
            raise DetectorError(f"detector.cascade={path}: no such file; leave it unset")
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise DetectorError(f"detector.cascade={path}: not a readable OpenCV cascade")
        if scale_factor <= 1.0:
            raise DetectorError(f"detector.scale_factor must be > 1, got {scale_factor}")
        self.width = int(width)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self.equalize = bool(equalize)
        self.near = float(near)

    def detect(self, frame: np.ndarray) -> list[Box]:
        grey, factor = self._small_grey(frame)
        return self._scan(grey, factor, 0, 0)

    def detect_still(self, frame: np.ndarray) -> list[Box]:
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        return self._scan(grey, 1.0, 0, 0)

    def detect_near(self, frame: np.ndarray, boxes: Sequence[Box]) -> list[Box]:
        grey, factor = self._small_grey(frame)
        height, width = grey.shape
        found: list[Box] = []
        for box in boxes:
            cx, cy = box.center
            half = max(box.width, box.height) * factor * self.near / 2
            x1, y1 = max(0, int(cx * factor - half)), max(0, int(cy * factor - half))
            x2, y2 = min(width, int(cx * factor + half)), min(height, int(cy * factor + half))
            if min(x2 - x1, y2 - y1) >= self.min_size:
                found += self._scan(grey[y1:y2, x1:x2], factor, x1, y1)
        return dedupe(found)

    def _small_grey(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        factor = _downscale_factor(grey, self.width)
        if factor < 1.0:
            size = (round(grey.shape[1] * factor), round(grey.shape[0] * factor))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        if self.equalize:  # evens out lighting; the cascade was trained on equalised faces
            grey = cv2.equalizeHist(grey)
        return grey, factor

    def _scan(self, grey: np.ndarray, factor: float, left: int, top: int) -> list[Box]:
        """Cascade hits in `grey` (a region at (left, top) of the small frame), in frame pixels."""
        found = self.classifier.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [
            Box(
                (left + x) / factor,
                (top + y) / factor,
                (left + x + w) / factor,
                (top + y + h) / factor,
            )
            for x, y, w, h in np.asarray(found, dtype=np.float64).reshape(-1, 4).tolist()
        ]


def _bundled_cascade() -> Path:
    return Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"


# the narrowest face YuNet finds reliably, in pixels of the image it runs on (measured by
# tests/test_live_detectors.py)
SMALLEST_FACE_PX = 18


class YuNetDetector(Detector):
    """YuNet (libfacedetection, through `yuface`): boxes with five landmarks, any pose.

    - `width`: video frames are downscaled to this width before detection (cost grows with
      the pixel count; faces of about 10 px and up are found at that scale).
    - `threshold`: least face confidence, 0..1.
    - `still_pad`: a photograph where no face is found, or a face reaches its edge, is
      detected again with a border of this fraction of its longer side, so tight face crops
      (the face touching the edges) are found and their landmarks placed.
    - `still_work` / `min_face`: a photograph larger than `still_work` pixels on its longer
      side (border included) is detected at that size, or larger where a face `min_face`
      pixels wide would otherwise fall below the smallest face YuNet finds: every face of
      at least `min_face` px is found at a fraction of the full-resolution cost.
      `min_face=0`: photographs at full resolution.
    - `still_min` / `still_max`: bounds of the longer side photographs are detected at: small
      ones up for finer landmarks, huge ones down.
    - `refine_px`: each face of a photograph is detected again in a window where it is this
      wide, for landmarks that follow a tilted head (0 = off). Video frames are not refined.
    """

    name = "yunet"

    def __init__(
        self,
        width: int = 256,
        threshold: float = 0.5,
        still_pad: float = 0.25,
        still_min: int = 256,
        still_max: int = 1600,
        still_work: int = 320,
        min_face: int = 36,
        refine_px: int = 0,
        threads: int = 1,
    ) -> None:
        if not 0 < threshold < 1:
            raise DetectorError(f"detector.threshold must be in (0, 1), got {threshold}")
        if still_pad < 0 or width < 32 or not 32 <= still_min <= still_max:
            raise DetectorError(
                "detector: width and still_min must be >= 32, still_min <= still_max and "
                f"still_pad >= 0 (got width={width}, still_min={still_min}, "
                f"still_max={still_max}, still_pad={still_pad})"
            )
        if still_work < 32 or not (min_face == 0 or min_face >= SMALLEST_FACE_PX):
            raise DetectorError(
                f"detector: still_work must be >= 32 and min_face 0 or >= {SMALLEST_FACE_PX} "
                f"(got still_work={still_work}, min_face={min_face})"
            )
        self._detect = _load_yuface(threads)
        self.width = int(width)
        self.threshold = float(threshold)
        self.still_pad = float(still_pad)
        self.still_min = int(still_min)
        self.still_max = int(still_max)
        self.still_work = int(still_work)
        self.min_face = int(min_face)
        self.refine_px = int(refine_px)

    def detect(self, frame: np.ndarray) -> list[Box]:
        factor = _downscale_factor(frame, self.width)
        return self._run(frame, factor, 0)

    def detect_still(self, frame: np.ndarray) -> list[Box]:
        found = self._still_pass(frame, 0)
        height, width = frame.shape[:2]
        if not found or any(_near_edge(box, width, height) for box in found):
            # a face touching the photograph's edge (a tight crop) is found, and its
            # landmarks placed, only with context around it: look again with a border
            pad = round(self.still_pad * max(height, width))
            if pad:
                found = self._still_pass(frame, pad)
        if self.refine_px:
            found = [self._refine(frame, box) for box in found]
        return found

    def still_factor(self, longer: int) -> float:
        """The scale a photograph whose longer side (border included) is `longer` pixels is
        detected at: down towards still_work while a min_face face stays findable, then
        within still_min..still_max."""
        factor = 1.0
        if self.min_face and longer > self.still_work:
            factor = min(1.0, max(self.still_work / longer, SMALLEST_FACE_PX / self.min_face))
        return min(max(factor, self.still_min / longer), self.still_max / longer)

    def _still_pass(self, frame: np.ndarray, pad: int) -> list[Box]:
        """One detection over the photograph with a black border of `pad` pixels, at the
        scale `still_factor` chooses."""
        factor = self.still_factor(max(frame.shape[:2]) + 2 * pad)
        if pad:
            frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        return self._run(frame, factor, pad)

    def _refine(self, frame: np.ndarray, box: Box) -> Box:
        """The face detected again in a window around it, scaled so that the face is
        `refine_px` pixels wide: YuNet's landmarks follow a tilted head only on large faces."""
        side = max(box.width, box.height)
        factor = self.refine_px / max(side, 1.0)
        window = round(2 * self.refine_px)
        cx, cy = box.center
        # frame -> window: scale about the face centre, centre it in the window
        matrix = np.array(
            [[factor, 0, window / 2 - factor * cx], [0, factor, window / 2 - factor * cy]]
        )
        region = cv2.warpAffine(
            frame,
            matrix,
            (window, window),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        candidates = [
            b.scaled(1.0 / factor, cx - window / (2 * factor), cy - window / (2 * factor))
            for b in self._run(region, 1.0, 0)
        ]
        best = max(candidates, key=box.iou, default=None)
        if best is None or box.iou(best) < 0.3:
            return box  # not found again in the window: keep the first look
        return best

    def _run(self, frame: np.ndarray, factor: float, pad: int) -> list[Box]:
        """Detect in `frame` resized by `factor`; boxes back in the frame's pixels less `pad`."""
        if factor != 1.0:
            size = (round(frame.shape[1] * factor), round(frame.shape[0] * factor))
            interpolation = cv2.INTER_LINEAR if factor > 1 else cv2.INTER_AREA
            frame = cv2.resize(frame, size, interpolation=interpolation)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        # rows: score 0..100, box x, y, w, h, five landmark (x, y); int16, so negative
        # coordinates of faces at the edge survive (yuface's own wrapper casts to uint16)
        rows = np.asarray(self._detect(np.ascontiguousarray(frame)), dtype=np.float64)
        rows = rows.reshape(-1, rows.shape[-1] if rows.size else 16)
        rows = rows[rows[:, 0] >= self.threshold * 100]
        found = []
        for row in rows:
            x, y, w, h = row[1:5]
            box = Box(x, y, x + w, y + h, row[0] / 100.0, tuple(row[5:15].tolist()))
            found.append(box.scaled(1.0 / factor, -pad, -pad))
        return found


def _near_edge(box: Box, width: int, height: int, share: float = 0.02) -> bool:
    """Whether the box reaches within `share` of the longer side of an edge of the frame."""
    margin = share * max(width, height)
    return box.x1 < margin or box.y1 < margin or box.x2 > width - margin or box.y2 > height - margin


def _load_yuface(threads: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        return load_yunet(threads)
    except ImportError as error:
        raise DetectorError(
            "detector=yunet needs the package 'yuface' (pip install yuface); or use detector=haar"
        ) from error


DetectorFactory = Callable[..., Detector]
_REGISTERED: dict[str, DetectorFactory] = {}


def register_detector(name: str, factory: DetectorFactory) -> None:
    """Make `build_detector(name)` build `factory(**options)`, without a conf/detector file."""
    _REGISTERED[name] = factory


def available_detectors() -> list[str]:
    return sorted({*group_options("detector"), *_REGISTERED})


def build_detector(spec: str | Mapping[str, Any], **options: Any) -> Detector:
    """A detector from its conf/detector/ name (or a registered one), or from a composed
    `detector` config (a mapping with `_target_`); `options` override the file's keys."""
    if isinstance(spec, Mapping) and "_target_" not in spec:  # {"name": NAME, **options}
        options = {**{k: v for k, v in spec.items() if k != "name"}, **options}
        spec = str(spec.get("name"))
    if isinstance(spec, str) and spec in _REGISTERED:
        try:
            return _REGISTERED[spec](**options)
        except TypeError as error:  # an option the detector does not take
            raise DetectorError(f"detector={spec}: bad option ({error})") from error
    if isinstance(spec, str):
        name, config = spec, load_option("detector", spec)
        if config is None:
            raise DetectorError(
                f"detector={spec}: unknown; choose one of {', '.join(available_detectors())}"
            )
    else:
        config = spec if isinstance(spec, DictConfig) else OmegaConf.create(dict(spec))
        name = str(config.get("_target_", "?")).rpartition(".")[2]
    merged = OmegaConf.merge(config, options) if options else config
    try:
        return instantiate(merged, _convert_="all")
    except InstantiationException as error:  # an option the class does not take, a bad value
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, TypeError):  # an option the class does not take
            raise DetectorError(f"detector={name}: bad option ({cause})") from error
        raise DetectorError(f"detector={name}: {cause or error}") from error
