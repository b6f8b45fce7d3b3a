"""Drawing on frames: a box and label per face (`F 27 83%`, track id) and the frame rate."""

from __future__ import annotations

import cv2
import numpy as np

from agegender.contract import label_text
from agegender.inference.tracking import Track

FONT = cv2.FONT_HERSHEY_SIMPLEX
FEMALE = (180, 80, 255)  # BGR: pink
MALE = (255, 170, 40)  # BGR: blue
UNKNOWN = (200, 200, 200)


def _text_scale(image: np.ndarray) -> float:
    return max(0.4, image.shape[0] / 900)  # readable on 480p and on 1080p


def draw_label(
    image: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]
) -> None:
    """Text on a filled background, its bottom-left at origin (kept inside the image)."""
    scale = _text_scale(image)
    thickness = max(1, round(scale * 2))
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x = min(max(0, origin[0]), max(0, image.shape[1] - width - 4))
    y = min(max(height + baseline + 4, origin[1]), image.shape[0])
    cv2.rectangle(image, (x, y - height - baseline - 4), (x + width + 4, y), color, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - baseline - 2), FONT, scale, (0, 0, 0), thickness)


def draw_faces(image: np.ndarray, faces: list[Track], show_ids: bool = True) -> None:
    """Box, label and track id of each face, in place."""
    thickness = max(2, round(image.shape[0] / 240))
    for face in faces:
        x1, y1, x2, y2 = face.box.as_ints()
        if face.smooth is None:
            color, text = UNKNOWN, "?"
        else:
            age, p_female = face.smooth
            color = FEMALE if p_female >= 0.5 else MALE
            text = label_text(age, p_female)
        if show_ids:
            text = f"#{face.id} {text}"
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
        draw_label(image, text, (x1, y1), color)


def draw_fps(image: np.ndarray, fps: float) -> None:
    draw_label(image, f"{fps:.0f} fps", (0, 0), (255, 255, 255))
