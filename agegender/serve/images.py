"""Uploaded bytes -> RGB image, refusing what is not a whole JPEG or PNG of a sane size.

The header is read first (PIL reads only it on open), so an image over `max_pixels` is
refused before its pixels are decoded: a small file can declare a huge image.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


class RequestError(Exception):
    """Input the server will not analyze; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG or PNG bytes -> RGB uint8 [H, W, 3], upright (EXIF orientation applied)."""
    if not data:
        raise RequestError(400, "empty body: send a JPEG or PNG image")
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns at 89 Mpx; ours below is the one that answers
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise RequestError(413, f"image too large: over max_pixels={max_pixels}") from None
    except Exception:  # PIL raises several types for bytes that are no image
        raise RequestError(400, "not an image: send a JPEG or PNG") from None
    if image.format not in FORMATS:
        raise RequestError(400, f"unsupported image format {image.format}: send a JPEG or PNG")
    width, height = image.size
    if width * height > max_pixels:
        raise RequestError(
            413, f"image too large: {width}x{height} is over max_pixels={max_pixels}"
        )
    try:
        image.load()  # raises on truncated or corrupt data (LOAD_TRUNCATED_IMAGES is off)
        image = ImageOps.exif_transpose(image) or image
        rgb = np.asarray(image.convert("RGB"))
    except Exception:
        raise RequestError(400, "truncated or corrupt image: send the whole file") from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 1:
        raise RequestError(400, "empty image")
    return rgb
