"""Photographs of one labelled person (UTKFace) through the face path.

`PhotoCrop` (the `data.crop` config) runs detection at full resolution and `crop_face` on
every training or evaluation photograph once, when the image store is built; `frame_photo`
is the step for one photograph. A photograph where no face is found is centre-cropped or
dropped, as configured, and counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from agegender.faces.align import TEMPLATE, eye_distance
from agegender.faces.crop import Framing, FramingError, crop_face, limit_detail
from agegender.faces.detectors import Box, Detector, build_detector
from agegender.preprocess import square_resize

# How a photograph's face was framed: aligned on landmarks, a square box crop (a face found
# without landmarks), or the whole photograph centre-cropped (no face found).
Outcome = Literal["aligned", "box", "centre"]
OUTCOMES: tuple[Outcome, ...] = ("aligned", "box", "centre")
ON_MISS = ("keep", "skip")


def main_face(boxes: list[Box], height: int, width: int) -> Box | None:
    """The face a single-face photograph is about: large, confident and near the centre."""
    if not boxes:
        return None
    diagonal = float(np.hypot(height, width))

    def weight(box: Box) -> float:
        cx, cy = box.center
        off_centre = np.hypot(cx - width / 2, cy - height / 2) / diagonal
        return box.area * box.score * (1.0 - off_centre)

    return max(boxes, key=weight)


class FramedPhoto(NamedTuple):
    """A photograph's face crop, how it was framed, and the face's eye distance in the
    photograph's pixels (None without landmarks): training records the typical one."""

    crop: np.ndarray
    outcome: Outcome
    eye_px: float | None = None


def frame_photo(image: np.ndarray, detector: Detector, framing: Framing, size: int) -> FramedPhoto:
    """A photograph of one person -> its face's crop and how it was framed.

    With no face found the whole photograph is centre-cropped (callers may drop those).
    """
    height, width = image.shape[:2]
    face = main_face(detector.detect_still(image), height, width)
    if face is None:
        return FramedPhoto(limit_detail(square_resize(image, size), framing.detail_px), "centre")
    if face.landmarks is None:
        return FramedPhoto(crop_face(image, face, framing, size), "box")
    outcome: Outcome = "aligned" if framing.align else "box"
    return FramedPhoto(crop_face(image, face, framing, size), outcome, eye_distance(face.landmarks))


@dataclass(frozen=True)
class PhotoCrop:
    """`data.crop`: how every photograph of a dataset is framed once, in the image store.

    - `framing`: what `crop_face` does with the face found (stored in checkpoints, so live
      and eval frame faces the same way).
    - `detector`: the detector (conf/detector/ name) run at full resolution on each photo.
    - `on_miss`: `keep` centre-crops a photograph where no face is found, `skip` drops it.
    """

    framing: Framing = field(default_factory=Framing)
    detector: str = "yunet"
    on_miss: str = "keep"

    def __post_init__(self) -> None:
        if self.on_miss not in ON_MISS:
            raise FramingError(f"data.crop.on_miss={self.on_miss}: use one of {', '.join(ON_MISS)}")

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> PhotoCrop | None:
        """None (no `data.crop`) keeps each photograph's own framing: centre square, resized."""
        if config is None:
            return None
        values = dict(config)
        detector = str(values.pop("detector", "yunet"))
        on_miss = str(values.pop("on_miss", "keep"))
        return cls(Framing.from_dict(values), detector, on_miss)

    def key(self) -> str:
        """Identifies what the store's pixels depend on (the template included)."""
        return json.dumps(
            {
                "framing": self.framing.to_dict(),
                "detector": self.detector,
                "on_miss": self.on_miss,
                "template": TEMPLATE.round(4).tolist(),
            },
            sort_keys=True,
        )

    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint records so that live and eval frame faces the same way."""
        return {**self.framing.to_dict(), "detector": self.detector}

    def cropper(self, size: int) -> Callable[[np.ndarray], FramedPhoto]:
        """BGR photograph -> its FramedPhoto, the crop RGB [size, size, 3]."""
        detector = build_detector(self.detector)

        def crop(bgr: np.ndarray) -> FramedPhoto:
            framed = frame_photo(bgr, detector, self.framing, size)
            return framed._replace(crop=cv2.cvtColor(framed.crop, cv2.COLOR_BGR2RGB))

        return crop
