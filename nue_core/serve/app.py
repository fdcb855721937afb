"""The FastAPI app: OpenAI's ``POST /v1/audio/transcriptions`` and ``GET /v1/models``, plus
``GET /health`` (the readiness probe) and ``GET /metrics`` (Prometheus).

Error mapping (every body OpenAI-shaped, ``nue_core.serve.errors``):

- 400: a bad or unsupported form field (named in ``param``), undecodable or too short audio
  (``param: file``), word timestamps from a model without a CTC head;
- 401: a missing or wrong bearer token (when the server has an API key);
- 413: an upload over the size limit (``Content-Length`` or bytes read) or audio over the
  duration limit (from the header before decoding, where the format has one);
- 429: the engine's queue is full (``Retry-After`` says when to retry);
- 500: decoding failed (a bug: the message names the exception); the server goes on serving;
- 503: the models are still loading, or the server is draining (SIGTERM).

A client that disconnects before its answer has its engine requests cancelled (their rows are
freed at the next step) and is counted with status 499 in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nue_core.data.audio import AudioError, AudioTooLong
from nue_core.errors import ConfigError, one_line
from nue_core.inference.engine import EngineLimits, EngineResult, EngineStats, QueueFull
from nue_core.inference.engine_background import EngineStopped
from nue_core.inference.timestamps import check_timestamps
from nue_core.serve.errors import ApiError, bad_request, error_body
from nue_core.serve.metrics import CONTENT_TYPE, ServerMetrics
from nue_core.serve.request import TranscriptionRequest, parse_transcription_form
from nue_core.serve.responses import MEDIA_TYPES, body, usage
from nue_core.serve.security import check_bearer
from nue_core.serve.served import Job, ServedModel
from nue_core.serve.settings import ServeSettings
from nue_core.serve.streaming import DeltaStream, sse, transcript_events

log = logging.getLogger("nue_core.serve")
CLIENT_CLOSED = 499  # nginx's status for a client that went away: counted, never sent

ModelSource = Any  # a loaded SpeechLM, or a zero-argument callable returning one


@dataclass
class ServerState:
    """What the routes share: the served models (filled once loaded), readiness and draining."""

    names: tuple[str, ...]
    settings: ServeSettings
    served: dict[str, ServedModel] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def stats(self) -> dict[str, EngineStats]:
        return {name: model.stats() for name, model in list(self.served.items())}


def create_app(models: Mapping[str, ModelSource], settings: ServeSettings = ServeSettings(),
               limits: EngineLimits = EngineLimits(),
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving ``models`` (name -> SpeechLM, or a callable that loads one).

    Models given as callables are loaded on a thread when the app starts, so ``/health`` answers
    503 until every model is loaded and its engine started; ``on_load_error`` is called (on that
    thread) if loading fails. Each model gets its own engine with ``limits``.
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    state = ServerState(tuple(models), settings)
    metrics = ServerMetrics(state.stats)

    def load_all() -> None:
        try:
            for name, source in models.items():
                model = source() if callable(source) and not hasattr(source, "generate") else source
                served = ServedModel(name, model, limits)
                served.start()
                state.served[name] = served
            state.ready = True
            log.info("serving %s", ", ".join(state.names))
        except BaseException as exc:  # noqa: BLE001 - reported through /health and on_load_error
            state.load_error = one_line(str(exc), 300) or type(exc).__name__
            log.error("loading the models failed: %s", state.load_error)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load_all, name="nue-load", daemon=True).start()
        yield
        # uvicorn has stopped accepting and finished the requests in flight: stop the engines.
        state.draining = True
        for served in list(state.served.values()):
            await asyncio.to_thread(served.stop, True, settings.drain_timeout)

    app = FastAPI(title="nue-asr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.nue = state
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), code=str(exc.status_code)), status_code=exc.status_code)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = ("draining" if state.draining else "failed" if state.load_error else
                  "ok" if state.ready else "loading")
        content: dict[str, Any] = {"status": status, "models": list(state.names)}
        if state.load_error:
            content["error"] = state.load_error
        return JSONResponse(content, status_code=200 if status == "ok" else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        check_bearer(request.headers.get("authorization"), settings.api_key)
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": state.created, "owned_by": "nue"} for name in state.names]})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        start, label = time.perf_counter(), "-"
        try:
            check_bearer(request.headers.get("authorization"), settings.api_key)
            _check_serving(state)
            await _read_body(request, settings.max_upload_bytes)
            try:
                form = await request.form(max_files=4, max_fields=64)
            except StarletteHTTPException as exc:  # a malformed multipart body
                raise bad_request("file", f"cannot read the multipart form: {exc.detail}") from None
            try:
                req = await parse_transcription_form(form, state.names)
            finally:
                await form.close()
            label = req.model
            served = state.served[req.model]
            if req.wants_words:
                try:
                    check_timestamps(served.model, "word")
                except ConfigError:
                    raise bad_request("timestamp_granularities", f"word timestamps need a model with a CTC head "
                                                                 f"and '{req.model}' has none; ask for segment") from None
            samples = await asyncio.to_thread(_read_audio, served, req, settings.max_audio_seconds)
            seconds = samples.shape[0] / served.sample_rate
            if req.stream:
                return _streamed(request, served, req, samples, seconds, metrics, label, start)
            job = _submit(served, samples, None, settings)
            results = await _wait(request, served, job)
            if results is None:
                metrics.observe(label, CLIENT_CLOSED)
                return Response(status_code=CLIENT_CLOSED)
            done = await asyncio.to_thread(served.assemble, job, results, req.wants_words)
            payload = body(req, done, seconds)
            metrics.observe(label, 200, time.perf_counter() - start, seconds)
            if isinstance(payload, dict):
                return JSONResponse(payload)
            return PlainTextResponse(payload, media_type=MEDIA_TYPES[req.response_format])
        except ApiError as exc:
            metrics.observe(label, exc.status)
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        except Exception as exc:  # noqa: BLE001 - a bug: this request's 500, never the server's end
            log.exception("transcription failed")
            metrics.observe(label, 500)
            return JSONResponse(error_body(f"internal error ({type(exc).__name__}: {one_line(str(exc), 200)}); "
                                           f"this is a bug in nue-asr", code="internal_error", type="server_error"),
                                status_code=500)

    return app


def _check_serving(state: ServerState) -> None:
    if state.draining:
        raise ApiError(503, "the server is shutting down; send the request to another replica",
                       code="server_shutting_down", type="server_error")
    if state.load_error:
        raise ApiError(503, f"the models failed to load: {state.load_error}", code="model_load_failed",
                       type="server_error")
    if not state.ready:
        raise ApiError(503, "the models are still loading; retry shortly (GET /health answers 200 when ready)",
                       code="model_loading", type="server_error", headers={"Retry-After": "5"})


async def _read_body(request: Request, limit: int) -> None:
    """Read the whole body, refusing more than ``limit`` bytes (413) before it is all held."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the upload is {int(declared):,} bytes", limit)
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(f"the upload is over {limit:,} bytes", limit)
        parts.append(part)
    request._body = b"".join(parts)  # Starlette's form() reads the cached body


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, f"{what}; this server takes at most {limit / 2**20:g} MiB per file (--max-upload-mb)",
                    param="file", code="file_too_large")


def _read_audio(served: ServedModel, req: TranscriptionRequest, max_seconds: float) -> Any:
    try:
        return served.read_audio(req.audio, req.filename, max_seconds)
    except AudioTooLong as exc:
        raise ApiError(413, f"{exc} (--max-audio-seconds)", param="file", code="audio_too_long") from None
    except AudioError as exc:
        raise bad_request("file", str(exc), code="invalid_audio") from None


def _submit(served: ServedModel, samples: Any, on_token: Any, settings: ServeSettings) -> Job:
    try:
        return served.submit(samples, on_token)
    except QueueFull:
        raise ApiError(429, f"the server is busy: its queue for '{served.name}' is full; retry later",
                       code="rate_limit_exceeded", type="requests",
                       headers={"Retry-After": str(settings.retry_after_seconds)}) from None
    except EngineStopped:
        raise ApiError(503, "the server is shutting down; send the request to another replica",
                       code="server_shutting_down", type="server_error") from None
    except AudioError as exc:
        raise bad_request("file", str(exc), code="invalid_audio") from None


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone away (the body is read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _wait(request: Request, served: ServedModel, job: Job) -> list[EngineResult] | None:
    """The job's results, or None (its requests cancelled) when the client disconnects first."""
    results = asyncio.ensure_future(asyncio.gather(*[asyncio.wrap_future(f) for f in job.futures]))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if results.done():
        try:
            return results.result()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            raise ApiError(503, "the request was cancelled: the server is shutting down", code="cancelled",
                           type="server_error") from None
        except Exception as exc:  # noqa: BLE001 - a decoding failure: this request's 500, not the server's end
            log.exception("decoding failed")
            raise ApiError(500, f"decoding failed ({type(exc).__name__}: {one_line(str(exc), 200)})",
                           code="decoding_failed", type="server_error") from None
    served.cancel(job)
    results.cancel()
    return None


def _streamed(request: Request, served: ServedModel, req: TranscriptionRequest, samples: Any, seconds: float,
              metrics: ServerMetrics, label: str, start: float) -> StreamingResponse:
    """A 200 with server-sent events (``nue_core.serve.streaming``); a full queue is still a 429."""
    stream = DeltaStream(served.model.tokenizer.decode)
    job = _submit(served, samples, stream.on_token, served_settings(request))
    stream.set_chunks(len(job.bounds))
    for k, future in enumerate(job.futures):
        future.add_done_callback(lambda _f, k=k: stream.on_done(k))

    def result_of(k: int) -> EngineResult:
        return job.futures[k].result()

    async def finish() -> dict[str, Any]:
        done = await asyncio.to_thread(served.assemble, job, [f.result() for f in job.futures], False)
        return {"type": "transcript.text.done", "text": done.text, "usage": usage(seconds)}

    async def events() -> AsyncIterator[bytes]:
        outcome = CLIENT_CLOSED
        # A client gone mid-stream cancels the job, which ends the deltas (Starlette may notice only
        # at the next send, and a slow chunk may not send for a while).
        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(lambda w: None if w.cancelled() else served.cancel(job))
        try:
            async for chunk in transcript_events(stream, result_of, finish):
                yield chunk
            outcome = 200
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            if watcher.done() and not watcher.cancelled():
                return  # the client is gone: nothing to send
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the stream; the server goes on
            outcome = 500
            log.exception("decoding failed")
            yield sse({"type": "error", "error": error_body(f"decoding failed ({type(exc).__name__}: "
                                                            f"{one_line(str(exc), 200)})", code="decoding_failed",
                                                            type="server_error")["error"]})
        finally:
            watcher.cancel()
            if outcome != 200:
                served.cancel(job)
            metrics.observe(label, outcome, time.perf_counter() - start if outcome == 200 else None,
                            seconds if outcome == 200 else 0.0)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def served_settings(request: Request) -> ServeSettings:
    return request.app.state.nue.settings
