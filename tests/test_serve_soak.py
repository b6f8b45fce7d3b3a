"""Soak: a thousand requests (some of them bad) through a real socket, memory stays flat."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

from agegender.api import FaceAnalyzer
from agegender.serve import ServeSettings, create_app
from tests.serving import face_frame, jpeg, running_server

REQUESTS = 1000
WARM_UP = 150  # allocator pools, onnxruntime arenas and caches fill during the first requests
ALLOWED_GROWTH_MB = 25.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_thousand_requests_keep_memory_flat(brief_onnx: Path) -> None:
    analyzer = FaceAnalyzer(brief_onnx, threads=1)
    photo = jpeg(face_frame(240, 150)[0])
    bad = photo[: len(photo) // 3]
    samples: list[float] = []
    with (
        running_server(create_app(analyzer, ServeSettings())) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for index in range(WARM_UP + REQUESTS):
            if index % 10 == 9:  # the error path is soaked too
                response = http.post(
                    "/api/analyze", content=bad, headers={"content-type": "image/jpeg"}
                )
                assert response.status_code == 400
            else:
                response = http.post("/api/analyze", files={"image": ("p.jpg", photo)})
                assert response.status_code == 200 and len(response.json()["faces"]) == 1
            if index >= WARM_UP and index % 100 == 0:
                samples.append(rss_mb())
    samples.append(rss_mb())
    print(f"RSS MB every 100 requests after warm-up: {[round(s, 1) for s in samples]}")
    growth = samples[-1] - samples[0]
    assert growth < ALLOWED_GROWTH_MB, (
        f"RSS grew {growth:.1f} MB over {REQUESTS} requests: {samples}"
    )


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_many_websocket_streams_come_and_go_without_growth(brief_onnx: Path) -> None:
    from websockets.sync.client import connect

    analyzer = FaceAnalyzer(brief_onnx, threads=1)
    frames = [jpeg(face_frame(100 + 20 * i, 150)[0], quality=80) for i in range(3)]
    app = create_app(analyzer, ServeSettings())
    samples: list[float] = []
    with running_server(app) as url:
        for index in range(300):
            with connect(url.replace("http", "ws") + "/ws/live") as ws:
                for frame in frames:
                    ws.send(frame)
                    assert len(json.loads(ws.recv())["faces"]) == 1
            if index >= 50 and index % 50 == 0:
                samples.append(rss_mb())
        deadline = time.monotonic() + 5
        while app.state.clients and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.clients == 0  # every closed stream was let go
    samples.append(rss_mb())
    print(f"RSS MB every 50 streams after warm-up: {[round(s, 1) for s in samples]}")
    assert samples[-1] - samples[0] < ALLOWED_GROWTH_MB, samples
