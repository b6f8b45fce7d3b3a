"""The REST routes: `POST /api/analyze` (an image -> its faces) and `GET /api/health`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from agegender.api import FaceAnalyzer
from agegender.serve.images import decode_upload
from agegender.serve.upload import image_bytes

router = APIRouter()


def analyze_bytes(analyzer: FaceAnalyzer, data: bytes, max_pixels: int) -> dict[str, Any]:
    """Decode (outside the analyzer's lock, so it overlaps other requests' inference) and
    analyze; raises RequestError for bytes that are not a usable image."""
    start = time.perf_counter()
    bgr = decode_upload(data, max_pixels)
    faces = analyzer.analyze(bgr, bgr=True)
    return {
        "faces": [face.to_dict() for face in faces],
        "image": {"width": int(bgr.shape[1]), "height": int(bgr.shape[0])},
        "ms": round(1000 * (time.perf_counter() - start), 1),
    }


@router.post("/api/analyze")
async def analyze(request: Request) -> dict[str, Any]:
    """Every face of an uploaded JPEG or PNG: box (x1, y1, x2, y2), age, p_female, gender."""
    state = request.app.state
    data = await image_bytes(request, state.settings.max_upload_bytes)
    # the model runs in the threadpool: the event loop keeps serving other clients meanwhile
    result = await run_in_threadpool(analyze_bytes, state.analyzer, data, state.settings.max_pixels)
    return {"faces": result["faces"], "model": state.analyzer.info, **result}


@router.get("/api/health")
async def health(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "status": "ok",
        "model": state.analyzer.info,
        "clients": state.clients,
        "max_clients": state.settings.max_clients,
    }
