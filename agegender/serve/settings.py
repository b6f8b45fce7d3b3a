"""What the server allows: upload size, image size, clients; from conf/serve.yaml's keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agegender.errors import UserError


class ServeError(UserError):
    """A serve option that cannot work."""


@dataclass(frozen=True)
class ServeSettings:
    max_upload_mb: float = 10.0  # request body (POST) or WebSocket message, in MiB
    max_pixels: int = 25_000_000  # width * height of an image, checked before decoding it
    max_clients: int = 4  # WebSocket connections served at once

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise ServeError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if self.max_pixels < 1:
            raise ServeError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.max_clients < 1:
            raise ServeError(f"max_clients must be >= 1, got {self.max_clients}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ServeSettings:
        return cls(
            max_upload_mb=float(cfg["max_upload_mb"]),
            max_pixels=int(cfg["max_pixels"]),
            max_clients=int(cfg["max_clients"]),
        )
