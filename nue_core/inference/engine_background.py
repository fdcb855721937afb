"""``BackgroundEngine``: a thread driving an ``Engine``, for servers.

``submit`` returns a ``concurrent.futures.Future[EngineResult]`` and may be called from any
thread; the engine thread admits, steps and resolves the futures. An error while decoding fails
the futures of the requests involved (``set_exception``) and the loop goes on serving.

``on_token`` callbacks run on the engine thread, inside the decode loop: keep them quick (hand the
token to a queue or an event loop's ``call_soon_threadsafe``) and never call the engine from them.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable

from nue_core.errors import NueError
from nue_core.inference.engine import Engine, EngineStats, RequestHandle


class EngineStopped(NueError, RuntimeError):
    """The BackgroundEngine is stopping or stopped: it accepts no more requests."""


class BackgroundEngine:
    """Runs ``engine.step`` on a daemon thread while there is work.

    Args:
        engine: the Engine to drive; only this thread steps it once ``start`` is called.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._futures: dict[int, tuple[RequestHandle, concurrent.futures.Future]] = {}
        self._accepting = False
        self._stop = False
        self._drain = True
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the engine thread (once)."""
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("BackgroundEngine already started")
            self._accepting = True
            self._thread = threading.Thread(target=self._loop, name="nue-engine", daemon=True)
            self._thread.start()

    def submit(self, waveform: Any, on_token: Callable[[int], None] | None = None) -> concurrent.futures.Future:
        """Queue a clip; the Future resolves to its EngineResult. Raises QueueFull (queue full),
        RequestRejected (a clip it can never decode) or EngineStopped synchronously."""
        with self._cond:
            if not self._accepting:
                raise EngineStopped("the BackgroundEngine is not running (not started, or stopping): "
                                    "it accepts no more requests")
            handle = self.engine.submit(waveform, on_token)
            future: concurrent.futures.Future = concurrent.futures.Future()
            # Registered under the lock the engine thread resolves under: never resolved before it exists.
            self._futures[handle.id] = (handle, future)
            self._cond.notify_all()
        future.add_done_callback(lambda f: self.engine.cancel(handle) if f.cancelled() else None)
        return future

    def cancel(self, future: concurrent.futures.Future) -> None:
        """Cancel the request behind ``future`` (its rows are freed at the next step)."""
        with self._cond:
            for handle, f in self._futures.values():
                if f is future:
                    self.engine.cancel(handle)
                    self._cond.notify_all()
                    return

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; drain=True finishes running and queued work first, drain=False
        cancels it. Then the thread ends (waits up to ``timeout`` seconds for it)."""
        with self._cond:
            self._accepting, self._stop, self._drain = False, True, drain
            if not drain:
                for handle, _ in self._futures.values():
                    self.engine.cancel(handle)
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    # ------------------------------------------------------------ engine thread

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.engine.has_work() and not self._stop:
                    self._cond.wait()
                if self._stop and not self.engine.has_work():
                    return
            try:
                finished = self.engine.step()
            except BaseException as exc:  # noqa: BLE001 - a bug in the engine itself: fail what it holds, go on
                finished = self._fail_everything(exc)
            self._resolve(finished)

    def _fail_everything(self, exc: BaseException) -> list[RequestHandle]:
        """Last resort when ``step`` raised: every request fails and the engine starts empty."""
        engine = self.engine
        handles = list(engine._running)
        with engine._lock:
            handles += list(engine._waiting)
            engine._waiting.clear()
            engine._queued_seconds = 0.0
        engine._running, engine._rows, engine._reserved = [], None, 0
        for handle in handles:
            handle.error, handle.done = exc, True
        return handles

    def _resolve(self, finished: list[RequestHandle]) -> None:
        with self._cond:
            entries = [self._futures.pop(h.id, None) for h in finished]
        for entry in entries:
            if entry is None:
                continue
            handle, future = entry
            try:
                if handle.cancelled:
                    future.cancel()
                elif handle.error is not None:
                    future.set_exception(handle.error)
                else:
                    future.set_result(handle.result)
            except concurrent.futures.InvalidStateError:  # its owner cancelled it meanwhile
                pass
