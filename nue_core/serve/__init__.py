"""``nue serve``: an OpenAI-compatible transcription server on FastAPI + uvicorn.

One module per job:

- ``app``: the FastAPI application factory (routes, lifespan, error handlers);
- ``request``: the multipart form of ``POST /v1/audio/transcriptions`` read and checked as
  OpenAI's API takes it;
- ``errors``: OpenAI-shaped error bodies (``{"error": {message, type, param, code}}``);
- ``served``: one served model: its continuous-batching engine, chunking and assembly per request;
- ``responses``: a finished transcript in each ``response_format``;
- ``streaming``: server-sent events with text deltas as tokens are decoded;
- ``metrics``: Prometheus metrics, one registry per app;
- ``security``: bearer-token auth and the bind-address rule;
- ``server``: running the app under uvicorn (signals, draining), in the foreground or a thread.

See docs/serving.md.
"""

from __future__ import annotations

from nue_core.serve.settings import ServeSettings

__all__ = ["ServeSettings"]
