"""Server benchmark: POST /api/analyze requests/s and WebSocket frames/s, round trip.

`serve.py`'s app runs in its own process under uvicorn (as users run it), on an untrained
128 px model exported to ONNX (speed does not depend on what the weights learned) and the
default detector. The clients are in this process, each on a keep-alive connection:

- `POST /api/analyze` with a 640x480 JPEG holding one face (the public-domain astronaut
  photograph on a background), by 1, 2 and 4 concurrent clients;
- `WS /ws/live`: one client sends the frames of a moving-face clip, each after the reply to
  the previous one (what the page does), so frames/s is the round-trip rate.

The server is set up as conf/serve.yaml sets it: two workers of one thread each, streams
detected on every frame.

Each row also has the server's CPU ms per request or frame (its process's CPU time over the
row): on a shared machine the wall-clock rates follow the other load, the CPU cost much less.

The pair beside them is the same work in-process (`decode` + `FaceAnalyzer.analyze`, no
HTTP): their ratio is what the web stack costs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agegender.scenes import face_frame, jpeg, write_untrained_checkpoint

THREADS = 1  # as conf/serve.yaml
WORKERS = 2
SETTINGS = {"detect_every": 1}  # the pipeline keys where conf/serve.yaml differs from live
FRAME_SIZE = (640, 480)
# The extra row's server detects uploads at full resolution (serve.py detector.min_face=0)
FULL_SIZE = {"min_face": 0}


def _serve(model: str, port: int, detector_options: dict[str, Any] | None = None) -> None:
    """The server process: what `python serve.py ckpt=MODEL port=PORT` runs (with
    `detector.KEY=VALUE` for each detector option)."""
    import uvicorn

    from agegender.api import FaceAnalyzer
    from agegender.inference.pipeline import set_threads
    from agegender.serve import create_app

    set_threads(THREADS)
    analyzer = FaceAnalyzer(
        model,
        threads=THREADS,
        workers=WORKERS,
        settings=SETTINGS,
        detector_options=detector_options,
    )
    app = create_app(analyzer)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def _server(
    model: Path, detector_options: dict[str, Any] | None = None
) -> Iterator[tuple[str, int]]:
    """serve.py's app in its own process: (its URL, its pid) while the block runs."""
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(str(model), port, detector_options), daemon=True
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url, process.pid or 0
    finally:
        process.terminate()
        process.join(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: multiprocessing.Process, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError("the benchmark server exited")
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the benchmark server did not start")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(pid: int, measure: Any, *args: Any) -> dict[str, float]:
    """A measurement, plus the server's CPU ms per request: on a shared machine, where
    wall-clock rates depend on the other load, this is what one idle core would cost."""
    before = cpu_seconds(pid)
    result = measure(*args)
    after = cpu_seconds(pid)
    if before is not None and after is not None:
        result["server_cpu_ms"] = round(1000 * (after - before) / result["count"], 1)
    return result


def post_rate(url: str, data: bytes, requests: int, clients: int) -> dict[str, float]:
    """Requests/s of `clients` keep-alive clients posting the JPEG `requests` times in all."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    per_client = max(1, requests // clients)
    start_line = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.post("/api/analyze", content=data, headers={"content-type": "image/jpeg"})
            start_line.wait()
            for _ in range(per_client):
                begin = time.perf_counter()
                response = http.post(
                    "/api/analyze", content=data, headers={"content-type": "image/jpeg"}
                )
                latencies.append(time.perf_counter() - begin)
                if response.status_code != 200 or len(response.json()["faces"]) != 1:
                    errors.append(response.text[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    begin = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    if errors:
        raise RuntimeError(f"bad answers during the benchmark: {errors[0]}")
    return {
        "per_s": round(len(latencies) / seconds, 1),
        "median_ms": round(1000 * statistics.median(latencies), 1),
        "count": len(latencies),
    }


def websocket_rate(url: str, frames: list[bytes], count: int) -> dict[str, float]:
    """Frames/s of one client that sends each frame after the previous reply."""
    from websockets.sync.client import connect

    latencies: list[float] = []
    with connect(url.replace("http://", "ws://") + "/ws/live", max_size=2**24) as ws:
        ws.send(frames[0])
        ws.recv()
        begin = time.perf_counter()
        for index in range(count):
            sent = time.perf_counter()
            ws.send(frames[index % len(frames)])
            ws.recv()
            latencies.append(time.perf_counter() - sent)
        seconds = time.perf_counter() - begin
    return {
        "per_s": round(count / seconds, 1),
        "median_ms": round(1000 * statistics.median(latencies), 1),
        "count": count,
    }


def in_process_rate(model: Path, data: bytes, count: int) -> dict[str, float]:
    """The same work without HTTP: decode the JPEG and analyze it, `count` times."""
    from agegender.api import FaceAnalyzer
    from agegender.serve.images import decode_upload

    analyzer = FaceAnalyzer(model, threads=THREADS)
    analyzer.analyze(decode_upload(data, 10**8), bgr=True)
    begin, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        analyzer.analyze(decode_upload(data, 10**8), bgr=True)
    seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
    return {
        "per_s": round(count / seconds, 1),
        "median_ms": round(1000 * seconds / count, 1),
        "count": count,
        "server_cpu_ms": round(1000 * cpu / count, 1),
    }


def clip_frames(count: int = 60) -> list[bytes]:
    """JPEGs of the face moving back and forth (a webcam-like stream for the tracker)."""
    frames = []
    for index in range(count):
        x = int(240 + 160 * np.sin(2 * np.pi * index / count))
        frames.append(jpeg(face_frame(x, 150, side=170)[0], quality=80))
    return frames


def run(quick: bool = False) -> dict:
    from agegender.export import export
    from agegender.inference.pipeline import set_threads

    requests, ws_frames = (40, 40) if quick else (600, 600)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    set_threads(THREADS)
    photo = jpeg(face_frame(240, 150)[0])
    stream = clip_frames()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agegender-bench-serve-") as tmp:
        checkpoint = write_untrained_checkpoint(Path(tmp) / "bench.ckpt")
        model = export(checkpoint, out=Path(tmp) / "bench.onnx", parity_images=4).path
        rows.append(
            {
                "what": "decode + analyze in-process",
                "clients": 1,
                **in_process_rate(model, photo, requests),
            }
        )
        with _server(model) as (url, pid):
            for clients in (1, 2, 4):
                rows.append(
                    {
                        "what": "POST /api/analyze",
                        "clients": clients,
                        **_with_cpu(pid, post_rate, url, photo, requests, clients),
                    }
                )
            rows.append(
                {
                    "what": "WS /ws/live round trip",
                    "clients": 1,
                    **_with_cpu(pid, websocket_rate, url, stream, ws_frames),
                }
            )
        # uploads detected at full resolution instead of the working size: what the
        # detection scale saves
        with _server(model, FULL_SIZE) as (url, pid):
            rows.append(
                {
                    "what": "POST /api/analyze, detector.min_face=0",
                    "clients": 2,
                    **_with_cpu(pid, post_rate, url, photo, requests, 2),
                }
            )
    load = ", ".join(f"{v:.1f}" for v in load_before) if load_before else "?"
    notes = (
        f"640x480 JPEG with one face, onnxruntime, model input 128 px, threads {THREADS}, "
        f"workers {WORKERS} (in-process: one), "
        f"default detector, {os.cpu_count()} CPUs, load average before {load}; server in its "
        f"own process, clients in this one"
    )
    inproc = rows[0]["per_s"]
    ratios = {
        "POST /api/analyze (1 client) / in-process": round(rows[1]["per_s"] / inproc, 2),
        "POST /api/analyze (2 clients) / in-process": round(rows[2]["per_s"] / inproc, 2),
        "POST /api/analyze (4 clients) / in-process": round(rows[3]["per_s"] / inproc, 2),
    }
    _print(rows, ratios, notes)
    return {"entry": "serve", "rows": rows, "ratios": ratios, "notes": notes}


def _print(rows: list[dict], ratios: dict[str, float], notes: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="serve: requests/s and WebSocket frames/s")
    for column in ("what", "clients", "per s", "median ms", "server CPU ms", "count"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for row in rows:
        table.add_row(
            row["what"],
            str(row["clients"]),
            str(row["per_s"]),
            str(row["median_ms"]),
            str(row.get("server_cpu_ms", "?")),
            str(row["count"]),
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for label, value in ratios.items():
        console.print(f"  {label}: {value:.2f}x")
    console.print(f"[dim]{notes}[/dim]")
