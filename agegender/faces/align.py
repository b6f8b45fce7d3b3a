"""Face framing: five landmarks -> a similarity warp onto one canonical template.

The template is where YuNet puts the eyes, nose tip and mouth corners in UTKFace's aligned
photographs (the set the recipe trains on; each with a quarter of its side as black border),
averaged and mirrored to be left-right symmetric, as fractions of the crop side. Warping
every face onto it, in training, evaluation and live, frames a webcam face the way the
training photographs were framed. `margin` zooms out around the template's centre, adding
context.
"""

from __future__ import annotations

import cv2
import numpy as np

# (x, y) as fractions of the crop side: right eye, left eye (image left to right), nose tip,
# right and left mouth corner. YuNet reports landmarks in this order.
TEMPLATE = np.array(
    [
        [0.2973, 0.2736],
        [0.7027, 0.2736],
        [0.5000, 0.5014],
        [0.3287, 0.6691],
        [0.6713, 0.6691],
    ],
    dtype=np.float64,
)
# Downscaling by more than this in one warp aliases; the frame is shrunk with INTER_AREA first.
_MAX_WARP_SHRINK = 2.0
# Source matching: a face is matched to the training photographs only when its eyes are this
# much farther apart than theirs (faces of the training photographs' own size stay as they are)
SHARPER_THAN = 1.25
# ... and is then re-compressed as the training photographs were: UTKFace's files are JPEG
# quality 75
SOURCE_JPEG_QUALITY = 75


def template_points(size: int, margin: float = 0.0) -> np.ndarray:
    """The template in pixels of a size x size crop, zoomed out by (1 + margin)."""
    centred = (TEMPLATE - 0.5) / (1.0 + margin) + 0.5
    return centred * size


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) that best maps `source` points onto
    `target` points in the least-squares sense (Umeyama's closed form, no reflection)."""
    source = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    target = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    covariance = dst.T @ src / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src**2).sum() / len(src)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def eye_distance(landmarks: np.ndarray) -> float:
    """Pixels between the two eyes (the first two landmarks)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return float(np.hypot(*(points[1] - points[0])))


def jpeg_round_trip(image: np.ndarray, quality: int = SOURCE_JPEG_QUALITY) -> np.ndarray:
    """The image as it comes back from a JPEG file of that quality."""
    encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(image.shape)


def is_sharper_than_source(landmarks: np.ndarray, source_eye_px: float | None) -> bool:
    """Whether a face's eyes are clearly farther apart than the training photographs'."""
    return source_eye_px is not None and eye_distance(landmarks) > SHARPER_THAN * source_eye_px


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int,
    margin: float = 0.0,
    source_eye_px: float | None = None,
) -> np.ndarray:
    """The face warped onto the template: [size, size, C] of `image`'s dtype.

    Parts of the crop outside the image repeat its edge pixels, so a face at the border of a
    tight photograph does not gain a black frame that live faces never have. With
    `source_eye_px`, a face sharper than the training photographs is first shrunk to their
    size and JPEG-compressed as they were (`match_source`).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if is_sharper_than_source(points, source_eye_px):
        image, points = match_source(image, points, float(source_eye_px), margin)
    return _warp(image, points, size, margin)


def match_source(
    image: np.ndarray, landmarks: np.ndarray, source_eye_px: float, margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The face's surroundings as a training photograph shows them: shrunk until the eyes
    are `source_eye_px` apart and JPEG-compressed as those files were; the landmarks moved
    along.

    The network learns the detail of its training photographs (UTKFace's aligned files are
    small JPEGs); a sharper face (a webcam, a large photograph) would show it texture it
    never saw.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    eyes = eye_distance(points)
    factor = source_eye_px / eyes
    # only the neighbourhood the crop can reach (its corners lie within 1.8 eye distances
    # of the landmarks' centre) is shrunk: cheap on a large frame
    reach = 2.0 * (1.0 + margin) * eyes
    centre = points.mean(0)
    height, width = image.shape[:2]
    x1, y1 = max(0, int(centre[0] - reach)), max(0, int(centre[1] - reach))
    x2, y2 = min(width, int(centre[0] + reach) + 1), min(height, int(centre[1] + reach) + 1)
    region = image[y1:y2, x1:x2]
    size = (max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor)))
    small = jpeg_round_trip(cv2.resize(region, size, interpolation=cv2.INTER_AREA))
    scale = np.array([size[0] / region.shape[1], size[1] / region.shape[0]])
    # pixel centres move with a resize: x -> (x + 0.5) * scale - 0.5
    return small, (points - [x1, y1] + 0.5) * scale - 0.5


def _warp(image: np.ndarray, landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    target = template_points(size, margin)
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    matrix = similarity(points, target)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 1.0 / _MAX_WARP_SHRINK:
        # shrink the frame first with area averaging, then warp from the smaller copy
        factor = scale * _MAX_WARP_SHRINK
        height, width = image.shape[:2]
        small_size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        factors = np.array([small_size[0] / width, small_size[1] / height])
        matrix = similarity(points * factors, target)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
