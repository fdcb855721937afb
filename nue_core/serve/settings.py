"""The server's settings, shared by the CLI, the app factory and the tests (no FastAPI import)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_AUDIO_SECONDS = 3 * 3600.0


@dataclass(frozen=True)
class ServeSettings:
    """Limits and options of one app.

    Attributes:
        api_key: the bearer token every ``/v1/`` request must carry; None: no auth.
        max_upload_bytes: larger uploads answer 413 (checked from Content-Length, then while reading).
        max_audio_seconds: longer audio answers 413 (from the header before decoding, where it can).
        retry_after_seconds: the ``Retry-After`` of a 429 when the engine has no throughput yet to
            estimate it from.
        drain_timeout: seconds a stopping server waits for running requests before cancelling them.
    """

    api_key: str | None = None
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    retry_after_seconds: int = 1
    drain_timeout: float | None = None
