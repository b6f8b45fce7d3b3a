"""The web app over HTTP and WebSocket: answers, every error status, limits, concurrency."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from agegender.api import FaceAnalyzer
from agegender.faces.detectors import Box, Detector
from agegender.serve import ServeSettings, create_app
from agegender.serve.settings import ServeError
from agegender.serve.websocket import NewestFrame
from tests.serving import face_frame, iou, jpeg, running_server

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ServeSettings(max_upload_mb=1, max_pixels=1_000_000, max_clients=2)


@pytest.fixture(scope="module")
def analyzer(brief_onnx: Path) -> FaceAnalyzer:
    return FaceAnalyzer(brief_onnx, threads=1)


@pytest.fixture(scope="module")
def client(analyzer: FaceAnalyzer) -> Iterator[TestClient]:
    with TestClient(create_app(analyzer, SETTINGS)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, Box]:
    bgr, truth = face_frame(260, 140)
    return jpeg(bgr), truth


def assert_serves(client: TestClient, photo: tuple[bytes, Box]) -> None:
    """The server still answers a good request correctly."""
    data, truth = photo
    response = client.post("/api/analyze", content=data, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    (face,) = response.json()["faces"]
    assert iou(face["box"], truth) > 0.5


def test_health_names_the_model(client: TestClient, brief_onnx: Path) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["model"]["name"] == brief_onnx.name
    assert body["model"]["backend"] == "onnxruntime" and body["model"]["image_size"] == 64


def test_page_and_script_are_served_locally(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js">' in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "getUserMedia" in script.text
    # nothing from other hosts: every link is local, every URL in the script is this host's
    assert all(
        link.startswith(("/", "data:")) for link in re.findall(r'(?:src|href)="([^"]*)"', page.text)
    )
    for url in re.findall(r"https?://[^\s\"'`]+", script.text):
        assert url.startswith(("http://127.0.0.1", "http://localhost")), url


def test_multipart_upload(client: TestClient, photo: tuple[bytes, Box], analyzer) -> None:
    data, truth = photo
    response = client.post("/api/analyze", files={"image": ("me.jpg", data, "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    (face,) = body["faces"]
    assert set(face) == {"box", "age", "p_female", "gender"}
    assert iou(face["box"], truth) > 0.5
    assert face["gender"] == ("female" if face["p_female"] >= 0.5 else "male")
    expected = analyzer.analyze(cv2.imdecode(np.frombuffer(data, np.uint8), 1), bgr=True)[0]
    assert face["age"] == pytest.approx(expected.age, abs=0.05)
    assert body["model"]["backend"] == "onnxruntime" and body["ms"] > 0
    assert body["image"] == {"width": 640, "height": 480}


def test_raw_png_body_and_no_face(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 60, 90)).save(buffer, "PNG")
    response = client.post(
        "/api/analyze", content=buffer.getvalue(), headers={"content-type": "image/png"}
    )
    assert response.status_code == 200 and response.json()["faces"] == []


def test_exif_orientation_is_applied(client: TestClient) -> None:
    rgb = cv2.cvtColor(face_frame(260, 140)[0], cv2.COLOR_BGR2RGB)
    image = Image.fromarray(rgb).rotate(90, expand=True)  # stored on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    response = client.post("/api/analyze", files={"image": ("r.jpg", buffer.getvalue())})
    assert response.json()["image"] == {"width": 640, "height": 480}
    assert len(response.json()["faces"]) == 1


def _bad_requests(photo: bytes) -> dict[str, tuple[int, dict]]:
    huge = io.BytesIO()
    Image.new("L", (1200, 1000)).save(huge, "PNG")  # a small file, over max_pixels
    png = cv2.imencode(".png", face_frame(100, 100)[0])[1].tobytes()
    return {
        "not an image": (400, {"content": b"hello" * 50, "headers": {"content-type": "image/png"}}),
        "truncated": (
            400,
            {"content": photo[: len(photo) // 2], "headers": {"content-type": "image/jpeg"}},
        ),
        "truncated PNG": (
            400,
            {"content": png[: len(png) // 2], "headers": {"content-type": "image/png"}},
        ),
        "empty raw body": (400, {"content": b"", "headers": {"content-type": "image/jpeg"}}),
        "empty body": (400, {}),
        "empty multipart file": (400, {"files": {"image": ("e.jpg", b"", "image/jpeg")}}),
        "no image field": (400, {"files": {"photo": ("p.jpg", photo, "image/jpeg")}}),
        "a GIF": (
            400,
            {"content": b"GIF89a" + b"\0" * 64, "headers": {"content-type": "image/png"}},
        ),
        "text": (415, {"content": b"abc", "headers": {"content-type": "text/plain"}}),
        "json": (415, {"json": {"image": "x"}}),
        "body over max_upload_mb": (
            413,
            {
                "content": b"\xff" * (SETTINGS.max_upload_bytes + 1),
                "headers": {"content-type": "image/jpeg"},
            },
        ),
        "image over max_pixels": (
            413,
            {"content": huge.getvalue(), "headers": {"content-type": "image/png"}},
        ),
    }


@pytest.mark.parametrize("case", list(_bad_requests(b"x")))
def test_bad_input_gets_its_status_and_one_line(
    client: TestClient, photo: tuple[bytes, Box], case: str
) -> None:
    status, request = _bad_requests(photo[0])[case]
    response = client.post("/api/analyze", **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
    assert_serves(client, photo)


def test_wrong_routes_and_methods_are_json(client: TestClient) -> None:
    for response, status in (
        (client.get("/api/nothing"), 404),
        (client.get("/api/analyze"), 405),
        (client.post("/api/health"), 405),
    ):
        assert response.status_code == status and response.json()["error"]


def test_huge_chunked_body_is_refused_while_streaming(analyzer: FaceAnalyzer, photo) -> None:
    """No Content-Length: the server stops reading at the limit instead of taking it all."""
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(200):  # 200 MiB if the server read it all
            sent += 2**20
            yield b"\xff" * 2**20

    with running_server(create_app(analyzer, SETTINGS)) as url:
        try:
            response = httpx.post(
                f"{url}/api/analyze",
                content=chunks(),
                headers={"content-type": "image/jpeg"},
                timeout=30,
            )
            assert response.status_code == 413 and "max_upload_mb" in response.json()["error"]
        except httpx.HTTPError:
            pass  # the server may close the connection while the client is still sending
        assert sent < 50 * 2**20
        again = httpx.post(
            f"{url}/api/analyze", content=photo[0], headers={"content-type": "image/jpeg"}
        )
        assert again.status_code == 200 and len(again.json()["faces"]) == 1


def test_twenty_clients_at_once_get_their_own_answers(analyzer: FaceAnalyzer) -> None:
    positions = [(20 + 22 * i, 40 + 15 * (i % 10)) for i in range(20)]
    frames = [face_frame(x, y, side=140 + 2 * i) for i, (x, y) in enumerate(positions)]
    uploads = [jpeg(bgr) for bgr, _ in frames]
    expected = [
        analyzer.analyze(cv2.imdecode(np.frombuffer(data, np.uint8), 1), bgr=True)
        for data in uploads
    ]
    start = threading.Barrier(20)

    def post(index: int) -> dict:
        with httpx.Client(base_url=url, timeout=60) as http:
            start.wait()
            response = http.post("/api/analyze", files={"image": ("f.jpg", uploads[index])})
            assert response.status_code == 200, response.text
            return response.json()

    with running_server(create_app(analyzer, SETTINGS)) as url, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    for answer, want, (_, truth) in zip(answers, expected, frames, strict=True):
        assert answer["faces"] == [face.to_dict() for face in want]  # this image's answer
        assert max(iou(face["box"], truth) for face in answer["faces"]) > 0.5


def test_websocket_streams_faces_with_steady_ids(client: TestClient) -> None:
    ids = set()
    with client.websocket_connect("/ws/live") as ws:
        for index in range(12):
            bgr, truth = face_frame(100 + 10 * index, 150)
            ws.send_bytes(jpeg(bgr))
            reply = ws.receive_json()
            (face,) = reply["faces"]
            assert iou(face["box"], truth) > 0.4
            assert face["gender"] in ("female", "male") and 1 <= face["age"] <= 100
            ids.add(face["id"])
            assert reply["width"] == 640 and reply["frame"] == reply["seq"] == index + 1
        ws.send_bytes(b"not a jpeg")
        assert "not an image" in ws.receive_json()["error"]
        ws.send_text("hello")
        assert "binary" in ws.receive_json()["error"]
        ws.send_bytes(b"\xff" * (SETTINGS.max_upload_bytes + 1))
        assert "too large" in ws.receive_json()["error"]
        ws.send_bytes(jpeg(face_frame(220, 150)[0]))
        assert ws.receive_json()["faces"][0]["id"] in ids  # the stream went on after errors
    assert len(ids) == 1


def test_websocket_clients_over_max_are_closed_with_a_reason(client: TestClient) -> None:
    frame = jpeg(face_frame(100, 100)[0])
    with client.websocket_connect("/ws/live") as first, client.websocket_connect("/ws/live") as b:
        for ws in (first, b):
            ws.send_bytes(frame)
            assert ws.receive_json()["faces"][0]["id"] == 1  # each its own tracker
        with (
            client.websocket_connect("/ws/live") as third,
            pytest.raises(WebSocketDisconnect) as closed,
        ):
            third.receive_json()
        assert closed.value.code == 1013 and "max_clients=2" in closed.value.reason
        assert client.get("/api/health").json()["clients"] == 2
    time.sleep(0.2)
    assert client.get("/api/health").json()["clients"] == 0
    with client.websocket_connect("/ws/live") as again:  # room again
        again.send_bytes(frame)
        assert again.receive_json()["faces"]


class SlowDetector(Detector):
    name = "slow"

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def detect(self, frame: np.ndarray) -> list[Box]:
        time.sleep(self.seconds)
        return [Box(10, 10, 60, 60)]


def test_slow_server_drops_to_the_newest_frame(brief_onnx: Path) -> None:
    analyzer = FaceAnalyzer(brief_onnx, SlowDetector(), settings={"detect_every": 1})
    frames = [jpeg(face_frame(20 * i, 100)[0], quality=50) for i in range(8)]
    with (
        TestClient(create_app(analyzer, SETTINGS)) as slow,
        slow.websocket_connect("/ws/live") as ws,
    ):
        for data in frames:
            ws.send_bytes(data)
        replies = [ws.receive_json()]
        while replies[-1]["frame"] + replies[-1]["dropped"] < len(frames):
            replies.append(ws.receive_json())
    assert len(replies) <= 3 and replies[-1]["dropped"] >= 5
    assert replies[0]["seq"] == 1 and replies[-1]["seq"] == len(frames)  # the newest answered


def test_newest_frame_mailbox_keeps_only_the_last() -> None:
    import asyncio

    async def scenario() -> tuple:
        box = NewestFrame()
        for item in (b"1", b"2", b"3"):
            box.put(item)
        first = await box.take()
        box.put(b"4")
        box.close()
        return first, await box.take(), box.dropped, box.received

    assert asyncio.run(scenario()) == ((3, b"3"), None, 2, 4)


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ServeError, match="max_clients"):
        ServeSettings(max_clients=0)
    with pytest.raises(ServeError, match="max_upload_mb"):
        ServeSettings(max_upload_mb=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_py_end_to_end_and_its_errors(brief_onnx: Path, photo) -> None:
    """serve.py as a user runs it: answers curl-like uploads; a busy port or a missing
    checkpoint is one line on stderr and exit status 2."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "serve.py", f"ckpt={brief_onnx}", f"port={port}"]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve.py did not come up"
            time.sleep(0.3)
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/analyze", files={"image": ("p.jpg", photo[0])}
        )
        assert response.status_code == 200 and len(response.json()["faces"]) == 1
        busy = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert busy.returncode == 2
        assert busy.stderr.strip().count("\n") == 0 and f"127.0.0.1:{port}" in busy.stderr
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
    missing = subprocess.run(
        [sys.executable, "serve.py", "ckpt=/nowhere/model.onnx"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "/nowhere/model.onnx" in missing.stderr


def test_analysis_runs_off_the_event_loop(brief_onnx: Path) -> None:
    """While a slow analysis runs, the server still answers other requests at once."""
    analyzer = FaceAnalyzer(brief_onnx, SlowDetector(seconds=1.5))
    photo = jpeg(face_frame(100, 100)[0])
    with running_server(create_app(analyzer, SETTINGS)) as url, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            httpx.post, f"{url}/api/analyze", content=photo, headers={"content-type": "image/jpeg"}
        )
        time.sleep(0.3)  # the upload is in the detector now
        begin = time.perf_counter()
        assert httpx.get(f"{url}/api/health").status_code == 200
        waited = time.perf_counter() - begin
        assert slow.result().status_code == 200
    assert waited < 0.6, f"health waited {waited:.2f} s behind the analysis"
