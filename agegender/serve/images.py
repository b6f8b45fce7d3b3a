"""Uploaded bytes -> BGR frame, refusing what is not a whole JPEG or PNG of a sane size.

PIL reads only the header (format and size), so an image over `max_pixels` is refused
before its pixels are decoded: a small file can declare a huge image. OpenCV then decodes
the pixels (several times faster than PIL here, and straight into the pipeline's BGR order,
with the EXIF orientation applied). OpenCV decodes a truncated JPEG without complaint, so
JPEGs are first checked to end their last scan with an end-of-image marker.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from agegender.preprocess import ImageDecodeError, decode_bgr

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}
SOS, EOI = b"\xff\xda", b"\xff\xd9"  # JPEG markers: start of scan, end of image


class RequestError(Exception):
    """Input the server will not analyze; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _image_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    try:
        with warnings.catch_warnings():
            # PIL's own bomb check warns at 89 Mpx; ours below is the one that answers
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        raise RequestError(413, f"image too large: over max_pixels={max_pixels}") from None
    except Exception:  # PIL raises several types for bytes that are no image
        raise RequestError(400, "not an image: send a JPEG or PNG") from None
    if kind not in FORMATS:
        raise RequestError(400, f"unsupported image format {kind}: send a JPEG or PNG")
    if width * height > max_pixels:
        raise RequestError(
            413, f"image too large: {width}x{height} is over max_pixels={max_pixels}"
        )
    return kind, width, height


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """JPEG or PNG bytes -> BGR uint8 [H, W, 3], upright (EXIF orientation applied)."""
    if not data:
        raise RequestError(400, "empty body: send a JPEG or PNG image")
    kind, _, _ = _image_header(data, max_pixels)
    # an embedded thumbnail has its own end marker, so the last one must follow the last scan
    if kind == "JPEG" and data.rfind(EOI) < data.rfind(SOS):
        raise RequestError(400, "truncated image: send the whole file")
    try:
        bgr = decode_bgr(data)
    except ImageDecodeError as error:
        raise RequestError(400, "truncated or corrupt image: send the whole file") from error
    return bgr
