"""Helpers for the serve tests: frames with the astronaut's face at a known place, and the
app running under uvicorn on a free local port in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import cv2
import numpy as np

from agegender.bench.live import FacePatch, astronaut_patch, background
from agegender.inference.detectors import Box
from agegender.serve.run import bind

SIZE = (640, 480)


@lru_cache(maxsize=1)
def _patch() -> FacePatch:
    return astronaut_patch()


@lru_cache(maxsize=1)
def _background() -> np.ndarray:
    return background(SIZE)


def face_frame(x: int, y: int, side: int = 160) -> tuple[np.ndarray, Box]:
    """A 640x480 BGR frame with the astronaut's head (side x side) at (x, y), and where the
    face is in it (the box a detector finds in the full photograph, moved and scaled)."""
    patch = _patch()
    factor = side / patch.image.shape[0]
    image = cv2.resize(patch.image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(patch.mask, (side, side), interpolation=cv2.INTER_AREA)[..., None]
    frame = _background().astype(np.float32)
    region = frame[y : y + side, x : x + side]
    region[:] = mask * image + (1 - mask) * region
    face = Box(*(v * factor for v in patch.face[:4]))
    return frame.astype(np.uint8), Box(face.x1 + x, face.y1 + y, face.x2 + x, face.y2 + y)


def jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def iou(a: list[float] | Box, b: list[float] | Box) -> float:
    return Box(*a[:4]).iou(Box(*b[:4]))


@contextmanager
def running_server(app: object, ws_max_size: int = 16 * 2**20) -> Iterator[str]:
    """uvicorn serving `app` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", ws_max_size=ws_max_size)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
