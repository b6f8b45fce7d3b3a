"""The one preprocessing path from image bytes or pixels to network input.

Training (through the decode-once cache), evaluation, live video and the exported model all
use these functions, so a face crop reaches the network the same way everywhere: RGB, square,
resized with area interpolation, uint8 0..255 (normalisation lives inside the network).
"""

from __future__ import annotations

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """Bytes that are not a decodable image."""


def decode_bgr(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> BGR uint8 [H, W, 3] (OpenCV's and the face
    detectors' channel order)."""
    if not data:
        raise ImageDecodeError("empty file")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageDecodeError("not a decodable image")
    return bgr


def decode_rgb(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> RGB uint8 [H, W, 3]."""
    return cv2.cvtColor(decode_bgr(data), cv2.COLOR_BGR2RGB)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square (UTKFace chips already are) and resize to size x size."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def to_batch(images: list[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 images [H, W, 3] of any size -> uint8 network batch [N, 3, size, size]."""
    batch = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for index, image in enumerate(images):
        batch[index] = square_resize(image, size).transpose(2, 0, 1)
    return batch
