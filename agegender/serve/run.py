"""`python serve.py`: load the model, build the app, bind the socket, run uvicorn."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from agegender.api import FaceAnalyzer
from agegender.inference.pipeline import set_threads
from agegender.serve.app import create_app
from agegender.serve.settings import ServeError, ServeSettings


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened here so a busy port is one clear line, not a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ServeError(f"host={host}: cannot resolve it ({error.strerror})") from error
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({error.strerror}); pass another port=, e.g. port=8001"
        ) from error
    sock.listen(128)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_from_config(cfg: Mapping[str, Any]) -> None:
    """Everything `python serve.py` does, from its composed config (see conf/serve.yaml)."""
    import uvicorn

    settings = ServeSettings.from_config(cfg)
    set_threads(cfg.get("threads"))
    analyzer = FaceAnalyzer.from_config(cfg)
    host, port = str(cfg["host"]), int(cfg["port"])
    sock = bind(host, port)
    app = create_app(analyzer, settings)
    info = analyzer.info
    url_host = f"[{host}]" if ":" in host else host
    print(
        f"serve: {info['name']} ({info['backend']}, {info['image_size']} px, detector "
        f"{info['detector']}) at http://{url_host}:{sock.getsockname()[1]}/  (Ctrl-C stops)"
    )
    if not _is_loopback(host):
        print(f"serve: host={host} is reachable from other machines; there is no login")
    config = uvicorn.Config(
        app,
        log_level=str(cfg.get("log_level", "info")),
        access_log=bool(cfg.get("access_log", False)),
        ws_max_size=settings.max_upload_bytes,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])
