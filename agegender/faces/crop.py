"""The one face path: a detected face (box, landmarks) -> the network's input crop.

Training data preparation, `eval.py`, `live.py` and the server all call `crop_face` (through
`agegender.faces.photo` for photographs of one labelled face), with the framing stored in the
checkpoint, so every path shows the network a face framed the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

from agegender.errors import UserError
from agegender.faces.align import align_face
from agegender.faces.detectors import Box
from agegender.preprocess import square_resize


class FramingError(UserError):
    """A framing option that cannot work."""


@dataclass(frozen=True)
class Framing:
    """How a face becomes a network input.

    - `align`: warp the face onto the landmark template (faces found without landmarks, e.g.
      by Haar, fall back to the box crop); False = square box crops only.
    - `margin`: context around the aligned template, as a fraction of its side.
    - `box_margin`: box crops are squares (1 + box_margin) times the box's longer side.
    - `detail_px`: every crop is reduced to this many pixels a side and scaled back up, so a
      sharp face (a webcam, a large photograph) carries no more detail than the training
      photographs did (null = as sharp as the source allows).
    - `source_eye_px`: the training photographs' typical eye distance in their own pixels,
      which training measures and records in the checkpoint; an aligned face whose eyes are
      clearly farther apart is first shrunk to it and JPEG-compressed as those files were
      (`align.match_source`). None = faces as sharp as their source (training itself).
    """

    align: bool = True
    margin: float = 0.0
    box_margin: float = 0.4
    detail_px: int | None = None
    source_eye_px: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.margin <= 2 or not 0 <= self.box_margin <= 3:
            raise FramingError(
                f"crop margins out of range: margin={self.margin} (0..2), "
                f"box_margin={self.box_margin} (0..3)"
            )
        if self.detail_px is not None and not 16 <= self.detail_px <= 1024:
            raise FramingError(
                f"crop detail_px={self.detail_px}: use 16..1024 pixels, or null for no limit"
            )
        if self.source_eye_px is not None and not 2 <= self.source_eye_px <= 1000:
            raise FramingError(
                f"crop source_eye_px={self.source_eye_px}: use 2..1000 pixels, or null"
            )

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for optional in ("detail_px", "source_eye_px"):
            if values[optional] is None:  # left out: stores and checkpoints from before it
                del values[optional]  # keep their keys
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Framing:
        """A framing from config or checkpoint metadata; unknown keys are a user error."""
        values = dict(values or {})
        known = {"align", "margin", "box_margin", "detail_px", "source_eye_px"}
        if set(values) - known:
            raise FramingError(
                f"unknown crop option(s) {sorted(set(values) - known)}; known: {sorted(known)}"
            )
        return cls(
            align=bool(values.get("align", cls.align)),
            margin=float(values.get("margin", cls.margin)),
            box_margin=float(values.get("box_margin", cls.box_margin)),
            detail_px=None if values.get("detail_px") is None else int(values["detail_px"]),
            source_eye_px=(
                None if values.get("source_eye_px") is None else float(values["source_eye_px"])
            ),
        )


# Checkpoints written before faces were aligned: square box crops, as live cropped then.
LEGACY_FRAMING = Framing(align=False, margin=0.0, box_margin=0.4)


def box_crop(frame: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Square around the box's centre, (1 + margin) times its longer side; parts outside the
    frame are black, so the face stays centred near the edges."""
    height, width = frame.shape[:2]
    cx, cy = box.center
    side = int(round(max(box.width, box.height, 2.0) * (1.0 + margin)))
    side = min(side, 2 * max(height, width))
    x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x2, y2 = x1 + side, y1 + side
    inside = frame[max(0, y1) : min(height, y2), max(0, x1) : min(width, x2)]
    if inside.shape[:2] == (side, side):
        return inside
    if inside.size == 0:
        return np.zeros((side, side, 3), dtype=frame.dtype)
    return cv2.copyMakeBorder(
        inside,
        max(0, -y1),
        max(0, y2 - height),
        max(0, -x1),
        max(0, x2 - width),
        cv2.BORDER_CONSTANT,
        value=(0, 0, 0),
    )


def crop_face(frame: np.ndarray, box: Box, framing: Framing, size: int) -> np.ndarray:
    """One face of a frame as the network sees it: [size, size, 3] in the frame's channel
    order. Aligned on the landmarks when the box has them and the framing asks for it."""
    if framing.align and box.landmarks is not None:
        crop = align_face(
            frame, np.asarray(box.landmarks), size, framing.margin, framing.source_eye_px
        )
    else:
        crop = square_resize(box_crop(frame, box, framing.box_margin), size)
    return limit_detail(crop, framing.detail_px)


def limit_detail(crop: np.ndarray, detail_px: int | None) -> np.ndarray:
    """The crop reduced to `detail_px` a side (area average) and scaled back to its size."""
    size = crop.shape[0]
    if detail_px is None or detail_px >= size:
        return crop
    small = cv2.resize(crop, (detail_px, detail_px), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def framing_of(meta: dict[str, Any], match_source: bool = True) -> Framing:
    """The framing a checkpoint or exported model was trained with (its "crop" metadata);
    `match_source=False` leaves out source matching, so sharp faces stay as sharp as they
    come (a trade measured in docs/accuracy.md)."""
    crop = meta.get("crop")
    if crop is None:
        return LEGACY_FRAMING
    framing = Framing.from_dict({k: v for k, v in dict(crop).items() if k != "detector"})
    return framing if match_source else replace(framing, source_eye_px=None)
