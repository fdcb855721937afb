"""``nue serve`` as a real process: SIGTERM stops accepting, answers what is in flight, exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.nue_core.serve.conftest import EXAMPLES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_drains_in_flight_requests(long_clip) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NUE_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-c", "from nue_core.cli import main; main()", "serve", "default",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        path = EXAMPLES[-1]
        # A streamed request: once its first delta has come it is certainly decoding; then SIGTERM.
        with httpx.stream("POST", url + "/v1/audio/transcriptions", timeout=120,
                          files={"file": (path.name, path.read_bytes(), "audio/wav")},
                          data={"model": "default", "stream": "true"}) as res:
            assert res.status_code == 200
            lines = res.iter_lines()
            events = []
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    break
            proc.send_signal(signal.SIGTERM)
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[0]["type"] == "transcript.text.delta"
        assert events[-1] == {"type": "transcript.text.done", "text": "two six four",
                              "usage": {"type": "duration", "seconds": 2}}
        assert proc.wait(60) == 0
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = proc.stdout.read()  # type: ignore[union-attr]
    assert "no API key: listening on 127.0.0.1 only" in output
