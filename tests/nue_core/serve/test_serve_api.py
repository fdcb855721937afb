"""``nue serve``'s HTTP API through the official ``openai`` client and raw httpx, on an in-process
uvicorn on 127.0.0.1 and a free port. Transcripts must equal ``nue_core.transcribe``'s."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import openai
import pytest

from nue_core.inference.engine import EngineLimits, QueueFull
from nue_core.inference.renderers import render, subtitles
from nue_core.serve.app import create_app
from nue_core.serve.security import bind_notice, is_loopback
from nue_core.serve.server import ThreadedServer
from nue_core.serve.settings import ServeSettings
from tests.nue_core.serve.conftest import EXAMPLES



@pytest.fixture(scope="module")
def server(model):  # type: ignore[no-untyped-def]
    with ThreadedServer(create_app({"default": model})) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def expected(model):  # type: ignore[no-untyped-def]
    """``nue transcribe``'s results for the examples, with segment times (as its srt/vtt use)."""
    import nue_core

    return {p: r for p, r in zip(EXAMPLES, nue_core.transcribe(model, EXAMPLES, timestamps="segment"))}


def _post(server, path=EXAMPLES[0], data=None, **kw):  # type: ignore[no-untyped-def]
    files = {"file": (path.name, path.read_bytes(), "audio/wav")} if path is not None else None
    kw.setdefault("timeout", 120)
    return httpx.post(server.url + "/v1/audio/transcriptions", files=files,
                      data={"model": "default", **(data or {})}, **kw)


def _metric(server, name: str) -> float:  # type: ignore[no-untyped-def]
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_response_format_equals_nue_transcribe(client, expected, path) -> None:  # type: ignore[no-untyped-def]
    want = expected[path]
    with path.open("rb") as f:
        assert client.audio.transcriptions.create(file=f, model="default").text == want.text
    for fmt in ("text", "srt", "vtt"):
        with path.open("rb") as f:
            got = client.audio.transcriptions.create(file=f, model="default", response_format=fmt)
        assert got == (render(want, "text") if fmt == "text" else subtitles(want, fmt)), fmt
    with path.open("rb") as f:
        verbose = client.audio.transcriptions.create(file=f, model="default", response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"])
    assert verbose.text == want.text and abs(verbose.duration - want.seconds) < 1e-3
    assert [s.text for s in verbose.segments] == [want.text]
    assert " ".join(w.word for w in verbose.words) == want.text
    assert all(a.end <= b.start + 1e-9 for a, b in zip(verbose.words, verbose.words[1:]))


def test_long_file_is_chunked_as_nue_transcribe_does(client, model, long_clip) -> None:  # type: ignore[no-untyped-def]
    import nue_core

    want = nue_core.transcribe(model, [long_clip])[0]
    assert want.chunks > 1
    with long_clip.open("rb") as f:
        got = client.audio.transcriptions.create(file=f, model="default", response_format="verbose_json")
    assert got.text == want.text
    assert len(got.segments) == want.chunks


def test_stream_sends_deltas_then_the_text(client, expected) -> None:  # type: ignore[no-untyped-def]
    path = EXAMPLES[-1]
    with path.open("rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model="default", stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) > 1 and events[-1].type == "transcript.text.done"
    assert "".join(deltas) == events[-1].text == expected[path].text


def test_stream_of_a_long_file_ends_with_the_joined_text(client, long_clip) -> None:  # type: ignore[no-untyped-def]
    with long_clip.open("rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model="default", stream=True))
    with long_clip.open("rb") as f:
        assert events[-1].text == client.audio.transcriptions.create(file=f, model="default").text


def test_models_health_and_metrics(server, client) -> None:  # type: ignore[no-untyped-def]
    assert [m.id for m in client.models.list()] == ["default"]
    assert httpx.get(server.url + "/health").status_code == 200
    text = httpx.get(server.url + "/metrics").text
    for name in ("nue_requests_total", "nue_request_duration_seconds_bucket", "nue_queue_depth",
                 "nue_running_rows", "nue_audio_seconds_total", "nue_generated_tokens_total"):
        assert name in text


@pytest.mark.parametrize(("data", "param"), [
    ({"response_format": "diarized_json"}, "response_format"),
    ({"temperature": "0.5"}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"prompt": "digits"}, "prompt"),
    ({"model": "whisper-1"}, "model"),
    ({"language": "english!"}, "language"),
    ({"stream": "maybe"}, "stream"),
    ({"stream": "true", "response_format": "srt"}, "stream"),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),
    ({"timestamp_granularities[]": "phoneme", "response_format": "verbose_json"}, "timestamp_granularities"),
    ({"include[]": "logprobs"}, "include[]"),
    ({"frobnicate": "1"}, "frobnicate"),
])
def test_bad_fields_are_openai_shaped_400s(server, data, param) -> None:  # type: ignore[no-untyped-def]
    res = _post(server, data=data)
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_missing_and_corrupt_files_are_400s(server, client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = _post(server, path=None)
    assert res.status_code == 400 and res.json()["error"]["param"] == "file"
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(EXAMPLES[0].read_bytes()[:20] + b"\x00garbage" * 50)
    with pytest.raises(openai.BadRequestError) as raised:
        with corrupt.open("rb") as f:
            client.audio.transcriptions.create(file=f, model="default")
    assert raised.value.status_code == 400 and "broken.wav" in raised.value.message
    assert raised.value.body["param"] == "file"
    # the server goes on serving
    with EXAMPLES[0].open("rb") as f:
        assert client.audio.transcriptions.create(file=f, model="default").text


def test_32_concurrent_requests_all_answered(client, expected) -> None:  # type: ignore[no-untyped-def]
    def one(i: int) -> tuple[str, str]:
        path = EXAMPLES[i % len(EXAMPLES)]
        with path.open("rb") as f:
            return client.audio.transcriptions.create(file=f, model="default").text, expected[path].text

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32), timeout=240))
    assert all(got == want for got, want in results)


def test_disconnecting_client_frees_its_rows(server, client, long_clip, expected) -> None:  # type: ignore[no-untyped-def]
    before = _metric(server, 'nue_requests_total{model="default",status="499"}')
    with pytest.raises(httpx.TimeoutException):
        _post(server, path=long_clip, timeout=httpx.Timeout(60, read=0.05))
    deadline = time.monotonic() + 30
    while _metric(server, 'nue_requests_total{model="default",status="499"}') <= before:
        assert time.monotonic() < deadline, "the disconnect was never noticed"
        time.sleep(0.05)
    with EXAMPLES[0].open("rb") as f:  # others are not stalled
        assert client.audio.transcriptions.create(file=f, model="default").text == expected[EXAMPLES[0]].text
    deadline = time.monotonic() + 30
    while _metric(server, "nue_running_rows") or _metric(server, "nue_queue_depth"):
        assert time.monotonic() < deadline, "the cancelled rows were never freed"
        time.sleep(0.05)


def test_size_and_duration_limits_are_413(model) -> None:  # type: ignore[no-untyped-def]
    settings = ServeSettings(max_upload_bytes=60_000, max_audio_seconds=1.0)
    sizes = [p.stat().st_size for p in EXAMPLES]
    assert sizes[1] > 60_000 > sizes[2]  # 2.3 s and 1.5 s of 16-bit 16 kHz audio
    with ThreadedServer(create_app({"default": model}, settings)) as server:
        big = _post(server, path=EXAMPLES[1])
        assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
        long = _post(server, path=EXAMPLES[2])  # within the size limit, over the duration limit
        assert long.status_code == 413 and long.json()["error"]["code"] == "audio_too_long"
        assert long.json()["error"]["param"] == "file"
        assert _post(server, path=EXAMPLES[0]).status_code == 200


def test_full_queue_is_429_with_retry_after(model) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    app = create_app({"default": model}, limits=EngineLimits(max_rows=1, max_queued_seconds=1.0))
    with ThreadedServer(app) as server:
        engine = app.state.nue.served["default"].engine
        release, started = threading.Event(), threading.Event()

        def block(token: int) -> None:  # holds the engine thread inside its step
            started.set()
            release.wait(60)

        blocker = engine.submit(np.zeros(16000, dtype=np.float32) + 0.01, on_token=block)
        assert started.wait(60)
        try:
            with pytest.raises(QueueFull):
                for _ in range(10):
                    engine.submit(np.zeros(8000, dtype=np.float32))
            res = _post(server)
            assert res.status_code == 429 and res.headers["Retry-After"].isdigit()
            assert res.json()["error"]["code"] == "rate_limit_exceeded"
        finally:
            release.set()
        blocker.result(60)
        assert _post(server).status_code == 200


def test_api_key(model) -> None:  # type: ignore[no-untyped-def]
    with ThreadedServer(create_app({"default": model}, ServeSettings(api_key="s3cret"))) as server:
        res = _post(server)
        assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"
        assert _post(server, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200  # the probe needs no key
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        with EXAMPLES[0].open("rb") as f:
            assert good.audio.transcriptions.create(file=f, model="default").text


def test_several_models_by_name(model) -> None:  # type: ignore[no-untyped-def]
    with ThreadedServer(create_app({"default": model, "digits": lambda: model})) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["default", "digits"]
        for name in ("default", "digits"):
            with EXAMPLES[0].open("rb") as f:
                assert client.audio.transcriptions.create(file=f, model=name).text == "four"


def test_bind_rule() -> None:
    from nue_core.errors import ConfigError

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert "127.0.0.1" in (bind_notice("127.0.0.1", None) or "")
    assert bind_notice("0.0.0.0", "key") is None
    with pytest.raises(ConfigError, match="--api-key"):
        bind_notice("0.0.0.0", None)
    assert "WARNING" in (bind_notice("0.0.0.0", None, allow_no_key=True) or "")
