"""Running the app under uvicorn: in the foreground (``nue serve``) or on a thread (tests, benchmarks).

SIGTERM (or Ctrl-C) drains: uvicorn closes the listening socket at once, so a load balancer's
new connections go elsewhere, ``/health`` answers 503 on connections still open, the requests in
flight are answered, then the engines stop and the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Any, Iterator, Mapping

import uvicorn

from nue_core.errors import NueError
from nue_core.inference.engine import EngineLimits
from nue_core.serve.app import ServerState, create_app
from nue_core.serve.settings import ServeSettings

log = logging.getLogger("nue_core.serve")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that marks the app as draining as soon as a stop is asked for."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.app_state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.app_state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn re-raises a caught signal once it has shut down, so the process dies of it;
        a drained SIGTERM is a clean stop here: exit status 0 (Ctrl-C still ends as uvicorn does)."""
        with super().capture_signals():
            yield
            self._captured_signals[:] = [s for s in self._captured_signals if s != signal.SIGTERM]


def run_server(models: Mapping[str, Any], host: str = "127.0.0.1", port: int = 8000,
               settings: ServeSettings = ServeSettings(), limits: EngineLimits = EngineLimits(),
               log_level: str = "info") -> None:
    """Serve until SIGTERM / Ctrl-C (see the module docstring).

    Raises:
        NueError: a model failed to load (the server stops at once; the message names it).
    """
    failure: list[BaseException] = []
    server: DrainingServer | None = None

    def load_failed(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(models, settings, limits, on_load_error=load_failed)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=settings.drain_timeout)
    server = DrainingServer(config, app.state.nue)
    if failure:  # failed before the server existed to be told
        server.should_exit = True
    server.run()
    if failure:
        exc = failure[0]
        raise exc if isinstance(exc, NueError) else NueError(f"loading the model failed: {exc}")


class ThreadedServer:
    """The app on a uvicorn server in a thread of this process, on ``host`` and a free port.

    ``with ThreadedServer(app) as server: httpx.get(server.url + "/health")``; entering waits
    until the models are loaded (``/health`` is 200), leaving drains and stops it.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
        self.server = DrainingServer(config, app.state.nue)
        self.thread = threading.Thread(target=self.server.run, name="nue-serve", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        state: ServerState = self.app.state.nue
        while not (self.server.started and state.ready):
            if state.load_error:
                raise NueError(f"loading the model failed: {state.load_error}")
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.app.state.nue.draining = True
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
