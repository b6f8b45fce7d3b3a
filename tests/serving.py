"""Helpers for the serve tests: frames with the astronaut's face at a known place, and the
app running under uvicorn on a free local port in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agegender.faces.detectors import Box
from agegender.scenes import face_frame, jpeg
from agegender.serve.run import bind

__all__ = ["face_frame", "iou", "jpeg", "running_server", "serve_config"]
REPO = Path(__file__).resolve().parents[1]


def serve_config(*overrides: str) -> dict:
    """conf/serve.yaml composed as `python serve.py OVERRIDES` composes it."""
    from omegaconf import OmegaConf

    from agegender.configs import compose_config

    return OmegaConf.to_container(compose_config("serve", *overrides), resolve=True)


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
