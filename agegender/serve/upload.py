"""The image bytes of a POST: a raw `image/jpeg`/`image/png` body or a multipart `image` field.

The body is read chunk by chunk and refused as soon as it passes `max_upload_mb`, so a client
cannot make the server hold an unbounded body (a declared Content-Length over the limit is
refused before reading anything).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from agegender.serve.images import RequestError

RAW_TYPES = ("image/jpeg", "image/jpg", "image/png")
FIELD = "image"
HOW = f"send a multipart form with a file field '{FIELD}', or a raw image/jpeg or image/png body"


def _too_large(limit: int) -> RequestError:
    return RequestError(413, f"body too large: over max_upload_mb={limit / 2**20:g}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes; 413 as soon as it is longer."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image's bytes (not yet decoded): 415 for other content types."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in RAW_TYPES:
        return await read_body(request, limit)
    if content_type != "multipart/form-data":
        if not content_type and request.headers.get("content-length", "0") == "0":
            raise RequestError(400, f"empty body: {HOW}")
        raise RequestError(415, f"unsupported content type '{content_type or 'none'}': {HOW}")
    body = await read_body(request, limit)
    if not body:
        raise RequestError(400, f"empty body: {HOW}")
    try:
        form = await MultiPartParser(request.headers, _once(body)).parse()
    except MultiPartException as error:
        raise RequestError(400, f"bad multipart form ({error.message}): {HOW}") from None
    try:
        part = form.get(FIELD)
        if not isinstance(part, UploadFile):
            raise RequestError(400, f"no file field '{FIELD}' in the form: {HOW}")
        return await part.read()
    finally:
        await form.close()
