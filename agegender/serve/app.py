"""`create_app(analyzer, settings)`: the FastAPI app, with every error as one line of JSON."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from agegender.api import FaceAnalyzer
from agegender.contract import VERSION
from agegender.serve import rest, websocket
from agegender.serve.images import RequestError
from agegender.serve.settings import ServeSettings

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("agegender.serve")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def bad_request(request: Request, error: RequestError) -> JSONResponse:
        response = _error(error.status, error.message)
        if error.status == 413:
            # the rest of the body is still on its way: closing stops it, where keep-alive
            # would have the server read and discard all of it
            response.headers["connection"] = "close"
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # a bug, not bad input: logged with its traceback here, one line for the client
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(error).__name__})")


def create_app(analyzer: FaceAnalyzer, settings: ServeSettings | None = None) -> FastAPI:
    """The web app over one analyzer: the page at `/`, `/api/analyze`, `/api/health`,
    `/ws/live`. No socket is opened here (tests use it through a test client)."""
    app = FastAPI(
        title="agegender",
        version=VERSION,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.analyzer = analyzer
    app.state.settings = settings or ServeSettings()
    app.state.clients = 0  # open WebSocket streams; changed only on the event loop
    _install_error_handlers(app)
    app.include_router(rest.router)
    app.include_router(websocket.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app
