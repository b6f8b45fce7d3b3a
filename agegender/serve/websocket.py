"""`WS /ws/live`: binary JPEG frames in, JSON faces out, one tracker per connection.

A reader task keeps only the newest frame that has arrived; the analysis loop takes it when
the previous frame is done. A client that sends faster than the model runs thus never makes
the server queue frames: older ones are dropped (and counted in the reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from agegender.api import FaceStream
from agegender.serve.images import RequestError, decode_upload

router = APIRouter()
log = logging.getLogger("agegender.serve")
TRY_AGAIN_LATER = 1013  # WebSocket close code: the server is busy


class NewestFrame:
    """A one-slot mailbox: `put` replaces what was not taken yet. Items are numbered in the
    order they arrived (1, 2, ...), so a reply can say which message it answers."""

    def __init__(self) -> None:
        self._item: tuple[int, bytes | str] | None = None
        self._ready = asyncio.Event()
        self.closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: bytes | str) -> None:
        self.received += 1
        if self._item is not None:
            self.dropped += 1
        self._item = (self.received, item)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> tuple[int, bytes | str] | None:
        """The newest item and its number; None once the connection is closed."""
        await self._ready.wait()
        self._ready.clear()
        item, self._item = self._item, None
        return None if self.closed else item


async def _read(websocket: WebSocket, mailbox: NewestFrame, limit: int) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                mailbox.put("send frames as binary JPEG or PNG messages, not text")
            elif len(data) > limit:
                mailbox.put(f"frame too large: over max_upload_mb={limit / 2**20:g}")
            else:
                mailbox.put(data)
    except Exception:  # a broken connection ends the reader like a disconnect
        pass
    finally:
        mailbox.close()


def _process(stream: FaceStream, data: bytes, max_pixels: int) -> dict[str, Any]:
    start = time.perf_counter()
    bgr = decode_upload(data, max_pixels)
    faces = stream.process(bgr, bgr=True)
    return {
        "faces": [face.to_dict() for face in faces],
        "width": int(bgr.shape[1]),
        "height": int(bgr.shape[0]),
        "ms": round(1000 * (time.perf_counter() - start), 1),
    }


@router.websocket("/ws/live")
async def live(websocket: WebSocket) -> None:
    state = websocket.app.state
    settings = state.settings
    await websocket.accept()  # accept first: a close reason only reaches an open socket
    if state.clients >= settings.max_clients:
        await websocket.close(
            code=TRY_AGAIN_LATER,
            reason=f"server busy: {state.clients} clients connected (max_clients="
            f"{settings.max_clients}); try again later",
        )
        return
    state.clients += 1
    mailbox = NewestFrame()
    reader = asyncio.create_task(_read(websocket, mailbox, settings.max_upload_bytes))
    stream = state.analyzer.stream()
    try:
        while (taken := await mailbox.take()) is not None:
            number, item = taken
            reply = {"seq": number, **await _answer(stream, item, settings.max_pixels, mailbox)}
            try:
                await websocket.send_json(reply)
            except Exception:  # the client went away while we worked; nobody to answer
                break
    finally:
        state.clients -= 1
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _answer(
    stream: FaceStream, item: bytes | str, max_pixels: int, mailbox: NewestFrame
) -> dict[str, Any]:
    """The reply to one message: its faces, or an error that leaves the stream open."""
    if isinstance(item, str):
        return {"error": item}
    try:
        reply = await run_in_threadpool(_process, stream, item, max_pixels)
    except RequestError as error:
        return {"error": error.message}
    except Exception as error:  # a bug, not bad input: logged here, one line for the client
        log.exception("unexpected error on a /ws/live frame")
        return {"error": f"internal error ({type(error).__name__})"}
    return {**reply, "frame": stream.frames, "dropped": mailbox.dropped}
