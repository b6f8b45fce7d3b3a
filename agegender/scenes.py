"""Generated scenes and models for the demo, the tests and the benchmarks.

The astronaut of `skimage.data.astronaut()` (a public-domain NASA photograph) composited at
moving positions on a still background, as clips and single frames with the known face
boxes, and untrained networks and checkpoints whose answers still vary with the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage import data
from torch import nn

from agegender.checkpoint import build_meta, save_checkpoint
from agegender.faces.crop import Framing
from agegender.faces.detectors import Box, Detector, build_detector
from agegender.faces.photo import PhotoCrop
from agegender.model import AgeGenderNet, NetConfig

FRAME_SIZE = (640, 480)
FPS = 30.0
IMAGE_SIZE = 128  # the model input of conf/data/utkface.yaml
# what training on UTKFace's aligned photographs records as their faces' eye distance
UTKFACE_EYE_PX = 25.0
# (patch side in pixels, lane centre y, horizontal speed px/frame, phase) for each face
FACE_PATHS = ((150, 240, 4.0, 0.0), (140, 95, -5.0, 0.35), (130, 385, 3.0, 0.7))


@dataclass
class FacePatch:
    image: np.ndarray  # BGR square around the face
    mask: np.ndarray  # float alpha [H, W, 1], soft ellipse
    face: Box  # the face box inside `image`


def astronaut_patch() -> FacePatch:
    """The astronaut's head, square, with a soft elliptical mask to blend it in."""
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    found = live_detector().detect_still(bgr)
    face = max(found, key=lambda b: b.area)  # one face in this photograph
    cx, cy = face.center
    half = int(face.width * 1.1)  # head and some hair around the face, like a webcam shot
    x1, y1 = max(0, int(cx) - half), max(0, int(cy) - half)
    image = bgr[y1 : y1 + 2 * half, x1 : x1 + 2 * half]
    side = image.shape[0]
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(
        mask, (side // 2, side // 2), (int(side * 0.45), int(side * 0.49)), 0, 0, 360, 1, -1
    )
    mask = cv2.GaussianBlur(mask, (0, 0), side / 30)[..., None]
    local = Box(face.x1 - x1, face.y1 - y1, face.x2 - x1, face.y2 - y1)
    return FacePatch(image, mask, local)


def live_detector() -> Detector:
    """The detector live.py uses by default (conf/live.yaml), with its default options."""
    return build_detector("yunet")


def background(size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A still 'room': a soft gradient and a few shapes, so the frame is not blank."""
    width, height = size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([60 + 80 * xs / width, 90 + 40 * ys / height, 120 - 50 * xs / width], -1)
    frame = frame.astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(40, 220, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 160)), int(rng.integers(20, 160))
        cv2.rectangle(frame, (x, y), (x + w, y + h), color, -1)
    return cv2.GaussianBlur(frame, (0, 0), 2)


def _position(index: int, path: tuple, width: int, side: int) -> tuple[int, int]:
    """Patch top-left at a frame: back and forth across the frame, bobbing up and down."""
    _, lane_y, speed, phase = path
    span = width - side
    travel = (phase * 2 * span + speed * index) % (2 * span)
    x = travel if travel <= span else 2 * span - travel
    y = lane_y - side / 2 + 12 * np.sin(index / 9 + phase * 6)
    return int(round(x)), int(round(y))


def make_face_clip(
    path: str | Path, faces: int = 1, frames: int = 90, size: tuple[int, int] = FRAME_SIZE
) -> list[list[Box]]:
    """Write a clip (mp4v) with `faces` moving astronaut faces; returns the face boxes per
    frame (where the live detector finds the face in the full-resolution photograph)."""
    if not 1 <= faces <= len(FACE_PATHS):
        raise ValueError(f"faces must be 1..{len(FACE_PATHS)}, got {faces}")
    patch = astronaut_patch()
    base = background(size)
    scaled = []
    for side, *_ in FACE_PATHS[:faces]:
        factor = side / patch.image.shape[0]
        image = cv2.resize(patch.image, (side, side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(patch.mask, (side, side), interpolation=cv2.INTER_AREA)[..., None]
        face = Box(*(v * factor for v in patch.face[:4]))
        scaled.append((image.astype(np.float32), mask, face))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    truth: list[list[Box]] = []
    try:
        for index in range(frames):
            frame = base.astype(np.float32)
            boxes = []
            for (image, mask, face), route in zip(scaled, FACE_PATHS, strict=False):
                side = image.shape[0]
                x, y = _position(index, route, size[0], side)
                region = frame[y : y + side, x : x + side]
                region[:] = mask * image + (1 - mask) * region
                boxes.append(Box(face.x1 + x, face.y1 + y, face.x2 + x, face.y2 + y))
            writer.write(frame.astype(np.uint8))
            truth.append(boxes)
    finally:
        writer.release()
    return truth


def write_untrained_checkpoint(
    path: Path, image_size: int = IMAGE_SIZE, seed: int = 0, framed: bool = True
) -> Path:
    """An untrained checkpoint (for speed and plumbing: they do not depend on the weights).

    `framed`: recorded as trained on the default face path, UTKFace's aligned photographs'
    eye distance included, so live aligns (and source-matches) faces as it would for such a
    model; False: photographs as stored (centre squares)."""
    torch.manual_seed(seed)
    net = NetConfig()
    model = AgeGenderNet(net)
    model.init_age_bias(30.0)  # plausible labels in pictures made with it
    crop = PhotoCrop(Framing(source_eye_px=UTKFACE_EYE_PX)).to_meta() if framed else None
    meta = build_meta(net, image_size, (1, 80), "frozen", crop=crop)
    return save_checkpoint(path, model, meta)


def faces_frame(heads: list[tuple[int, int, int]]) -> tuple[np.ndarray, list[Box]]:
    """A 640x480 BGR frame with the astronaut's head at each (x, y, side) (top-left, side in
    pixels), and where each face is (the box the detector finds in the full photograph,
    moved and scaled)."""
    patch = _patch()
    frame = _background().astype(np.float32)
    boxes = []
    for x, y, side in heads:
        factor = side / patch.image.shape[0]
        image = cv2.resize(patch.image, (side, side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(patch.mask, (side, side), interpolation=cv2.INTER_AREA)[..., None]
        region = frame[y : y + side, x : x + side]
        region[:] = mask * image.astype(np.float32) + (1 - mask) * region
        face = patch.face
        boxes.append(
            Box(
                face.x1 * factor + x,
                face.y1 * factor + y,
                face.x2 * factor + x,
                face.y2 * factor + y,
            )
        )
    return frame.astype(np.uint8), boxes


def face_frame(x: int, y: int, side: int = 160) -> tuple[np.ndarray, Box]:
    """A frame with one head at (x, y), and its face box (see `faces_frame`)."""
    frame, (box,) = faces_frame([(x, y, side)])
    return frame, box


_cache: dict[str, Any] = {}


def _patch() -> FacePatch:
    if "patch" not in _cache:
        _cache["patch"] = astronaut_patch()
    return _cache["patch"]


def _background() -> np.ndarray:
    if "background" not in _cache:
        _cache["background"] = background(FRAME_SIZE)
    return _cache["background"]


def jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


@torch.no_grad()
def calibrate_batchnorm(net: AgeGenderNet, images: torch.Tensor) -> None:
    """Re-estimate every BatchNorm's statistics on `images` (uint8 RGB batch).

    Benchmarks and tests cannot download ImageNet weights. A random MobileNetV2 with
    untouched statistics shrinks activations layer after layer into denormal floats (the same
    pooled features for every face, and slow arithmetic), unlike a trained one; fitted
    statistics keep values in a trained network's range.
    """
    layers = [layer for layer in net.modules() if isinstance(layer, nn.BatchNorm2d)]
    momenta = [layer.momentum for layer in layers]
    was_training = net.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a plain average over the calibration batch
        layer.train()
    net.embed(images)
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    net.train(was_training)  # frozen blocks back to eval mode


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def random_net(image_size: int = IMAGE_SIZE, seed: int = 0) -> AgeGenderNet:
    """Random weights with BatchNorm statistics estimated on random images."""
    torch.manual_seed(seed)
    net = AgeGenderNet(NetConfig())
    calibrate_batchnorm(net, torch.from_numpy(random_images(32, image_size, seed=seed)))
    return net.eval()
