"""Continuous (iteration-level) batching for SpeechLM decoding, as vLLM schedules LLM requests.

A static batch (``SpeechLM.generate``) runs every row until its longest item ends, and nothing can
join it. The ``Engine`` keeps a running batch of decoding rows with their KV cache instead; between
steps it admits waiting requests (their encoder, bridge and prompt prefill run batched together)
and removes finished rows, so the cache holds only live rows:

    engine = Engine(model, GenerationConfig.for_model(model.config))
    results = engine.run([wave_a, wave_b, ...])          # offline, results in input order
    # or: handle = engine.submit(wave); while engine.has_work(): engine.step()

Greedy, beam search (a request with ``num_beams = k`` holds k rows) and joint CTC decoding all run
through it, and each request's ids are those ``SpeechLM.generate`` gives the clip alone: every
token decision is made by ``nue_core.generation``'s own per-item functions on the request's own
rows, and a row's logits do not depend on the other rows (masked left padding, own positions).

``Engine`` is single-threaded: ``step`` runs on one thread; ``submit``, ``cancel`` and ``stats``
may be called from others. ``BackgroundEngine`` (``engine_background``) drives one on a thread.

Shape legend: r = rows of the running batch, k = beams, v = vocabulary, s = audio samples.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from nue_core.errors import NueError
from nue_core.generation import GenerationConfig, beam_log_probs, greedy_scores
from nue_core.inference.engine_prefill import prefill
from nue_core.inference.engine_requests import BeamSearch, Search, StepChoice, new_search
from nue_core.inference.engine_rows import Rows, check_decoder_supports_joining, continue_rows, join, select, trim


@dataclass(frozen=True)
class EngineLimits:
    """Scheduling limits.

    Attributes:
        max_rows: decoding rows in the running batch (a beam request takes num_beams rows).
        max_cached_tokens: sum over rows of cache length (prompt + generated); admission reserves
            each request's prompt plus its max new tokens, so a running row never overflows it.
        max_queued_seconds: audio waiting for admission; ``submit`` raises QueueFull beyond it
            (a single clip is accepted into an empty queue whatever its length).
        max_prefill: requests prefilled together in one admission.
    """

    max_rows: int = 64
    max_cached_tokens: int = 262_144
    max_queued_seconds: float = 3600.0
    max_prefill: int = 16


class QueueFull(NueError):
    """The engine's queue holds ``max_queued_seconds`` of audio already; submit again later."""


class RequestRejected(NueError, ValueError):
    """A clip the engine can never decode (empty, too long, too short, over the limits)."""


@dataclass
class EngineResult:
    """One decoded request.

    Attributes:
        ids: decoded token ids, eos removed (what ``SpeechLM.generate`` returns for the clip).
        ctc_log_probs: (t, c) float32 CPU log-softmax of the bridge's CTC logits, None without a CTC head.
        ctc_length: t (0 without a CTC head).
        encoder_frames: the clip's encoder output frames (``model.encoder.output_lengths``).
    """

    ids: list[int]
    ctc_log_probs: torch.Tensor | None
    ctc_length: int
    encoder_frames: int


@dataclass
class EngineStats:
    """A snapshot of the engine.

    Attributes:
        queued_requests, queued_seconds: waiting for admission.
        running_requests, running_rows: decoding now.
        cached_tokens: sum over rows of real cached positions (prompt + generated).
        cache_width: positions per row of the cache tensor (the longest live row; 0 when idle).
        tokens_generated: tokens decided so far (all requests, eos included), in total.
        seconds_admitted: audio admitted so far, in total.
    """

    queued_requests: int
    queued_seconds: float
    running_requests: int
    running_rows: int
    cached_tokens: int
    cache_width: int
    tokens_generated: int
    seconds_admitted: float


_ids = itertools.count()


@dataclass(eq=False)
class RequestHandle:
    """A submitted clip. Read ``done``, ``result`` (EngineResult once done), ``cancelled``, ``error``
    (the exception that failed it, if any) and ``seconds`` (its audio length)."""

    waveform: torch.Tensor = field(repr=False)
    seconds: float
    limit: int  # max new tokens (GenerationConfig.token_limits of its seconds)
    cost: int  # rows * (prompt bound + limit): cached tokens reserved while it runs
    on_token: Callable[[int], None] | None = field(default=None, repr=False)
    id: int = field(default_factory=lambda: next(_ids))
    done: bool = False
    cancelled: bool = False
    result: EngineResult | None = None
    error: BaseException | None = None
    _cancel_requested: bool = field(default=False, repr=False)
    _search: Search | None = field(default=None, repr=False)
    _outputs: tuple[int, torch.Tensor | None, int] | None = field(default=None, repr=False)


class Engine:
    """Continuous-batching decoder of one ``SpeechLM`` (float32 gives the ids of ``generate``).

    Args:
        model: a SpeechLM in eval mode whose decoder implements ``SupportsCacheJoining``.
        generation: decoding settings (default: the model config's, greedy).
        limits: scheduling limits.

    ``on_token`` callbacks run on the thread calling ``step`` (the engine thread of a
    BackgroundEngine), inside the decode loop: they must be quick and must not call the engine.
    One that raises fails its own request only.
    """

    def __init__(self, model: Any, generation: GenerationConfig | None = None,
                 limits: EngineLimits = EngineLimits()) -> None:
        self.model, self.limits = model, limits
        self.cfg = generation or GenerationConfig.for_model(model.config)
        if model.tokenizer is None:
            raise RuntimeError("this model has no tokenizer (it was composed only to be described)")
        model.check_generation(self.cfg)
        check_decoder_supports_joining(model.decoder)
        self.eos = int(model.tokenizer.eos_id)
        self.rows_per_request = max(1, self.cfg.num_beams) if self._beam else 1
        self._prompt_extra = len(model.prefix_ids) + len(model.postfix_ids)
        self._lock = threading.Lock()  # guards the queue and counters that other threads touch
        self._waiting: deque[RequestHandle] = deque()
        self._queued_seconds = 0.0
        self._running: list[RequestHandle] = []  # in row order: request i holds rows_per_request rows
        self._rows: Rows | None = None
        self._reserved = 0
        self._tokens_generated = 0
        self._seconds_admitted = 0.0

    @property
    def _beam(self) -> bool:
        return self.cfg.num_beams > 1 or self.cfg.force_beam_search

    # ------------------------------------------------------------ requests

    def submit(self, waveform: np.ndarray | torch.Tensor, on_token: Callable[[int], None] | None = None
               ) -> RequestHandle:
        """Queue a clip (s,) at ``model.sample_rate``. Raises QueueFull when the queue is full,
        RequestRejected for a clip the engine can never decode. Thread-safe."""
        wave = torch.as_tensor(np.asarray(waveform) if not isinstance(waveform, torch.Tensor) else waveform)
        handle = self._new_handle(wave.detach().float().cpu(), on_token)
        with self._lock:
            if self._waiting and self._queued_seconds + handle.seconds > self.limits.max_queued_seconds:
                raise QueueFull(f"{self._queued_seconds:.1f} s of audio queued (max_queued_seconds "
                                f"{self.limits.max_queued_seconds:g}); submit again when it drains")
            self._waiting.append(handle)
            self._queued_seconds += handle.seconds
        return handle

    def _new_handle(self, wave: torch.Tensor, on_token: Callable[[int], None] | None) -> RequestHandle:
        if wave.ndim != 1 or len(wave) == 0:
            raise RequestRejected(f"expected a non-empty mono waveform (s,), got shape {tuple(wave.shape)}")
        rate = self.model.sample_rate
        seconds = float(torch.tensor([len(wave)]).float()[0] / rate)
        if seconds > float(self.model.config.max_audio_seconds):
            raise RequestRejected(f"clip of {seconds:.2f} s is longer than the model's max_audio_seconds "
                                  f"{self.model.config.max_audio_seconds:g}; cut it first (nue_core.inference.chunking)")
        speech = int(self.model.speech_lengths(torch.tensor([len(wave)]))[0])
        if speech <= 0:
            raise RequestRejected(f"clip of {seconds:.3f} s is too short for this model (no speech vector)")
        # Exactly as generate: seconds = lengths.float() / sample_rate, then token_limits.
        limit = int(self.cfg.token_limits(torch.tensor([len(wave)]).float() / rate)[0])
        cost = self.rows_per_request * (self._prompt_extra + speech + max(limit, 0))
        if cost > self.limits.max_cached_tokens or self.rows_per_request > self.limits.max_rows:
            raise RequestRejected(f"a clip needing {cost} cached tokens and {self.rows_per_request} rows never fits "
                                  f"the limits {self.limits}")
        return RequestHandle(wave, seconds, limit, cost, on_token)

    def cancel(self, handle: RequestHandle) -> None:
        """Cancel a request: its rows (or its queue place) are freed at the next step. Thread-safe."""
        handle._cancel_requested = True

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._waiting) or bool(self._running)

    def stats(self) -> EngineStats:
        rows = self._rows
        with self._lock:
            return EngineStats(len(self._waiting), self._queued_seconds, len(self._running),
                               rows.count if rows is not None else 0,
                               int(rows.lengths().sum()) if rows is not None else 0,
                               rows.width if rows is not None else 0,
                               self._tokens_generated, self._seconds_admitted)

    # ------------------------------------------------------------ stepping

    @torch.no_grad()
    def step(self) -> list[RequestHandle]:
        """Drop cancelled requests, admit waiting ones as limits allow, run one decode step for
        every live row and retire finished rows. Returns the requests finished (done, cancelled or
        failed) during this call. Errors fail the requests involved, never the engine."""
        finished = self._drop_cancelled()
        finished += self._admit()
        if self._rows is not None:
            finished += self._decode_step()
        return finished

    def _drop_cancelled(self) -> list[RequestHandle]:
        gone: list[RequestHandle] = []
        with self._lock:
            for handle in [h for h in self._waiting if h._cancel_requested]:
                self._waiting.remove(handle)
                self._queued_seconds -= handle.seconds
                gone.append(handle)
        if any(h._cancel_requested for h in self._running):
            cancelled = [h for h in self._running if h._cancel_requested]
            self._keep_running([h for h in self._running if not h._cancel_requested])
            gone += cancelled
        for handle in gone:
            handle.cancelled = handle.done = True
        return gone

    def _keep_running(self, keep: list[RequestHandle]) -> None:
        """Only ``keep`` (a subsequence of the running requests) stay; their rows are selected."""
        k = self.rows_per_request
        index = {h.id: i for i, h in enumerate(self._running)}
        rows = [index[h.id] * k + j for h in keep for j in range(k)]
        for handle in self._running:
            if handle not in keep:
                self._reserved -= handle.cost
        self._running = keep
        if not keep or self._rows is None:
            self._rows = None
            return
        device = self._rows.state.mask.device
        self._rows = trim(self.model.decoder, select(self.model.decoder, self._rows, torch.tensor(rows, device=device)))

    def _take_admissible(self) -> list[RequestHandle]:
        """FIFO: the waiting requests that fit the rows and reserved cached tokens now."""
        taken: list[RequestHandle] = []
        rows = len(self._running) * self.rows_per_request
        with self._lock:
            while self._waiting and len(taken) < self.limits.max_prefill:
                head = self._waiting[0]
                if rows + self.rows_per_request > self.limits.max_rows or \
                        self._reserved + head.cost > self.limits.max_cached_tokens:
                    break
                self._waiting.popleft()
                self._queued_seconds -= head.seconds
                self._seconds_admitted += head.seconds
                rows += self.rows_per_request
                self._reserved += head.cost
                taken.append(head)
        return taken

    def _admit(self) -> list[RequestHandle]:
        admitted = self._take_admissible()
        if not admitted:
            return []
        try:
            new = prefill(self.model, [h.waveform for h in admitted], self.cfg, self.rows_per_request)
            rows = join(self.model.decoder, [self._rows, new.rows]) if self._rows is not None else new.rows
        except Exception as exc:  # noqa: BLE001 - a failed admission fails its requests only
            for handle in admitted:
                self._reserved -= handle.cost
                self._fail(handle, exc)
            return admitted
        self._rows = rows
        for i, handle in enumerate(admitted):
            handle._search = new_search(handle.limit, self.cfg, self.eos)
            handle._outputs = (new.encoder_frames[i], new.ctc_log_probs[i], new.ctc_lengths[i])
            handle.waveform = handle.waveform[:0]  # the audio is no longer needed: free it
        self._running += admitted
        # A request with no tokens to decode (a limit of 0) ends before any step, as generate does.
        ended = [h for h in admitted if h.limit <= 0]
        if ended:
            self._keep_running([h for h in self._running if h.limit > 0])
            for handle in ended:
                self._finish(handle)
        return ended

    def _decode_step(self) -> list[RequestHandle]:
        """Choose every row's token, file them per request, feed the continuing rows."""
        rows = self._rows
        assert rows is not None
        try:
            choices, extension = self._choose(rows)
        except Exception as exc:  # noqa: BLE001 - the batch state is unknown: fail every running request
            return self._fail_running(exc)
        finished, keep, tokens, staying = self._file(choices)
        self._tokens_generated += len(choices)  # one token decided per request and step
        if not staying:
            self._running, self._rows = [], None
            return finished
        device = rows.state.mask.device
        try:
            self._rows = continue_rows(self.model.decoder, rows, torch.tensor(keep, device=device),
                                       torch.tensor(tokens, device=device), extension)
            self._running = staying
        except Exception as exc:  # noqa: BLE001
            self._running = staying
            return finished + self._fail_running(exc)
        return finished

    @torch.no_grad()
    def _choose(self, rows: Rows) -> tuple[list[StepChoice], tuple | None]:
        """Per running request, its StepChoice of this step (rows local to the request)."""
        steps = torch.tensor([h._search.step for h in self._running for _ in range(self.rows_per_request)],  # type: ignore[union-attr]
                             device=rows.state.logits.device)
        if not self._beam:
            scores, extension = greedy_scores(rows.state.logits, steps, self.cfg, self.eos, rows.ctc, rows.ctc_state)
            tokens = scores.argmax(dim=-1).tolist()
            return [h._search.choose(t) for h, t in zip(self._running, tokens)], extension  # type: ignore[union-attr]
        k = self.rows_per_request
        logp, extension = beam_log_probs(rows.state.logits, steps, self.cfg, self.eos, rows.ctc, rows.ctc_state)
        searches: list[BeamSearch] = [h._search for h in self._running]  # type: ignore[misc]
        running = torch.cat([s.row_scores(logp.device) for s in searches])  # (r,)
        total = (logp + running.view(-1, 1)).view(len(searches), -1)  # (requests, k * v)
        top_scores, top_idx = total.topk(2 * k, dim=1)
        vocab = logp.shape[-1]
        return [s.choose(ts, ti, vocab) for s, ts, ti in zip(searches, top_scores.tolist(), top_idx.tolist())], extension

    def _file(self, choices: list[StepChoice]) -> tuple[list[RequestHandle], list[int], list[int], list[RequestHandle]]:
        """Call on_token, finish done requests; returns (finished, rows kept, their tokens, staying)."""
        finished: list[RequestHandle] = []
        keep: list[int] = []
        tokens: list[int] = []
        staying: list[RequestHandle] = []
        for i, (handle, choice) in enumerate(zip(self._running, choices)):
            try:
                for token in choice.new_tokens:
                    if handle.on_token is not None:
                        handle.on_token(token)
            except Exception as exc:  # noqa: BLE001 - a failing callback fails its own request
                self._reserved -= handle.cost
                self._fail(handle, exc)
                finished.append(handle)
                continue
            if choice.done:
                self._reserved -= handle.cost
                self._finish(handle)
                finished.append(handle)
                continue
            keep += [i * self.rows_per_request + r for r in choice.rows]
            tokens += choice.tokens
            staying.append(handle)
        return finished, keep, tokens, staying

    def _finish(self, handle: RequestHandle) -> None:
        assert handle._search is not None and handle._outputs is not None
        frames, log_probs, ctc_length = handle._outputs
        handle.result = EngineResult(list(handle._search.ids), log_probs, ctc_length, frames)
        handle.done = True

    def _fail(self, handle: RequestHandle, exc: BaseException) -> None:
        handle.error, handle.done = exc, True

    def _fail_running(self, exc: BaseException) -> list[RequestHandle]:
        failed = list(self._running)
        for handle in failed:
            self._reserved -= handle.cost
            self._fail(handle, exc)
        self._running, self._rows = [], None
        return failed

    # ------------------------------------------------------------ offline

    def run(self, waveforms: Sequence[np.ndarray | torch.Tensor]) -> list[EngineResult]:
        """Decode every clip (submitting more as the queue drains); results in input order.

        Raises the first request's error, if any failed.
        """
        handles: list[RequestHandle] = []
        pending = iter(waveforms)
        nxt = next(pending, None)
        while nxt is not None or self.has_work():
            while nxt is not None:
                try:
                    handles.append(self.submit(nxt))
                except QueueFull:
                    break
                nxt = next(pending, None)
            self.step()
        for handle in handles:
            if handle.error is not None:
                raise handle.error
        return [h.result for h in handles]  # type: ignore[misc]

