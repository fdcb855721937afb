"""One served model: its continuous-batching engine, and a request's audio -> chunks -> transcript.

A file is cut exactly as ``nue transcribe`` cuts it (``chunking.split_points`` with
``transcriber.default_plan``), each chunk is one engine request (so the chunks of one long file
decode side by side with other clients' requests), and the decoded chunks are joined by
``assembly.assemble``, the rule the batch Transcriber uses: the server's transcripts are
``nue transcribe``'s.

Shape legend: s = samples, t = CTC frames, c = CTC classes.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from nue_core.data.audio import AudioError, read_audio_bytes
from nue_core.inference.assembly import Assembled, assemble, decoded_chunk, should_align
from nue_core.inference.chunking import split_points
from nue_core.inference.engine import Engine, EngineLimits, EngineResult, EngineStats, QueueFull
from nue_core.inference.engine_background import BackgroundEngine
from nue_core.inference.transcriber import check_long_enough, default_plan, warn_if_untrained

ChunkTokenCallback = Callable[[int, int], None]  # (chunk index, token id), on the engine thread


@dataclass
class Job:
    """The engine requests of one uploaded file.

    Attributes:
        samples: (s,) the file at the model's rate.
        bounds: (start, end) samples of each chunk, in file order.
        futures: one per chunk, resolving to its EngineResult.
    """

    samples: np.ndarray
    bounds: list[tuple[int, int]]
    futures: list[concurrent.futures.Future]


class ServedModel:
    """A loaded SpeechLM served under ``name``, with its own BackgroundEngine.

    Args:
        name: the name clients pass as ``model``.
        model: a SpeechLM in eval mode (float32 decodes exactly as ``nue transcribe``).
        limits: the engine's scheduling limits (rows, cache, queued audio).
    """

    def __init__(self, name: str, model: Any, limits: EngineLimits = EngineLimits()) -> None:
        self.name, self.model = name, model.eval()
        warn_if_untrained(model)
        self.plan = default_plan(float(model.config.max_audio_seconds))
        self.engine = BackgroundEngine(Engine(model, None, limits))
        self.sample_rate = int(model.sample_rate)

    def start(self) -> None:
        self.engine.start()

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        self.engine.stop(drain=drain, timeout=timeout)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def read_audio(self, data: bytes, filename: str, max_seconds: float | None) -> np.ndarray:
        """(s,) samples of an upload at the model's rate.

        Raises:
            AudioTooLong: over ``max_seconds``.
            AudioError: undecodable, or too short for the model, naming ``filename``.
        """
        samples = read_audio_bytes(data, self.sample_rate, source=filename, max_seconds=max_seconds)
        check_long_enough(self.model, samples.shape[0], filename)
        return samples

    def submit(self, samples: np.ndarray, on_token: ChunkTokenCallback | None = None) -> Job:
        """Queue every chunk of a file. Raises QueueFull (nothing stays queued) when the engine's
        queue cannot take them all, AudioError for a chunk the engine can never decode."""
        from nue_core.inference.engine import RequestRejected

        bounds = split_points(samples, self.sample_rate, self.plan)
        futures: list[concurrent.futures.Future] = []
        try:
            for k, (a, b) in enumerate(bounds):
                callback = None if on_token is None else _bind(on_token, k)
                futures.append(self.engine.submit(samples[a:b], on_token=callback))
        except QueueFull:
            self.cancel_futures(futures)
            raise
        except RequestRejected as exc:
            self.cancel_futures(futures)
            raise AudioError(str(exc)) from None
        return Job(samples, bounds, futures)

    def cancel(self, job: Job) -> None:
        """Free the rows and queue places of a job whose client went away."""
        self.cancel_futures(job.futures)

    def cancel_futures(self, futures: list[concurrent.futures.Future]) -> None:
        for future in futures:
            if not future.done():
                self.engine.cancel(future)
                future.cancel()

    def assemble(self, job: Job, results: list[EngineResult], words: bool) -> Assembled:
        """The file's transcript from its decoded chunks (CPU work: run it off the event loop).

        Words are aligned when asked for, and for a file of several chunks when the model has a
        CTC head (the join then keeps each word heard in an overlap once, as the Transcriber does).
        """
        align = should_align(self.model, words, len(job.bounds))
        chunks = [decoded_chunk(self.model, (a, b), job.samples[a:b], result, align)
                  for (a, b), result in zip(job.bounds, results)]
        return assemble(chunks, self.sample_rate, self.plan.overlap_seconds, self.model.tokenizer.decode)

    def seconds(self, job: Job) -> float:
        return job.samples.shape[0] / self.sample_rate


def _bind(on_token: ChunkTokenCallback, chunk: int) -> Callable[[int], None]:
    return lambda token: on_token(chunk, token)
