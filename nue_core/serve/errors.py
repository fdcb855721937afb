"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status.

The official clients read ``error.message`` into their exception (``openai.BadRequestError`` for a
400, ``RateLimitError`` for a 429 ...), so every refusal of the server goes through ``ApiError``.
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "invalid_request_error"


class ApiError(Exception):
    """A request the server refuses: the HTTP status and the OpenAI error fields.

    Args:
        status: HTTP status (400, 401, 404, 413, 429, 503 ...).
        message: one line saying what is wrong and, where it can, what to send instead.
        param: the request parameter at fault (``file``, ``model``, ``response_format`` ...), or None.
        code: a short machine-readable code (``model_not_found``, ``rate_limit_exceeded`` ...).
        type: OpenAI's error type (``invalid_request_error`` for the client's mistakes).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = INVALID_REQUEST, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.param, self.code, self.type)


def error_body(message: str, param: str | None = None, code: str | None = None,
               type: str = INVALID_REQUEST) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """A 400 naming the request parameter at fault."""
    return ApiError(400, message, param=param, code=code)
