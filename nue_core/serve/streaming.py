"""``stream=true``: server-sent events with text deltas as tokens are decoded, then the text.

Events are OpenAI's (the official client's ``stream=True`` reads them)::

    data: {"type": "transcript.text.delta", "delta": "two"}
    data: {"type": "transcript.text.delta", "delta": " six"}
    data: {"type": "transcript.text.done", "text": "two six", "usage": {...}}

Tokens arrive on the engine thread (``on_token``) and are handed to the event loop with
``call_soon_threadsafe``. Each chunk's text is decoded from all its tokens so far (a piece may
complete a character only with the next one) and only what extends the text already sent is sent.
A long file's chunks decode side by side; their deltas are sent in file order, a chunk's once
the ones before it are done. The deltas of a long file are the chunks' own texts; the ``done``
event carries the joined transcript (a word heard in two chunks' overlap once), which is what
the non-streaming response holds.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator, Awaitable, Callable

from nue_core.inference.engine import EngineResult
from nue_core.subtitles import is_cjk


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


class ChunkText:
    """The text of one chunk as its tokens come, and the part of it not sent yet."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode, self.ids, self.sent = decode, [], ""

    def add(self, token: int) -> None:
        self.ids.append(token)

    def pending(self, final_ids: list[int] | None = None) -> str:
        """What extends the text sent so far (held back while a character is incomplete)."""
        text = self.decode(final_ids if final_ids is not None else self.ids).strip()
        if final_ids is None and text.endswith("\ufffd"):  # half a multi-byte character
            return ""
        if not text.startswith(self.sent):  # a later token changed the text before it: wait for the end
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


class DeltaStream:
    """Orders the token events of a job's chunks into text deltas (module docstring)."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue()
        self.decode = decode
        self.texts: list[ChunkText] = []
        self.current, self.total = 0, ""

    def set_chunks(self, chunks: int) -> None:
        """Once the job is submitted (its tokens wait in the queue until ``deltas`` reads them)."""
        self.texts = [ChunkText(self.decode) for _ in range(chunks)]

    def on_token(self, chunk: int, token: int) -> None:
        """Engine thread: hand the token to the event loop (quick, never blocks)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("token", chunk, token))

    def on_done(self, chunk: int) -> None:
        """Any thread: the chunk's future resolved (after all its tokens were handed over)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("done", chunk, -1))

    def _glued(self, delta: str, first: bool) -> str:
        if not delta:
            return ""
        if first and self.total and not is_cjk(self.total[-1]) and not is_cjk(delta[0]):
            delta = " " + delta
        self.total += delta
        return delta

    async def deltas(self, result_of: Callable[[int], EngineResult]) -> AsyncIterator[str]:
        """Text deltas until every chunk is done; ``result_of(k)`` raises when chunk k failed."""
        done: set[int] = set()
        chunks = len(self.texts)
        while self.current < chunks:
            kind, chunk, token = await self.queue.get()
            if kind == "token":
                self.texts[chunk].add(token)
                if chunk == self.current:
                    first = not self.texts[chunk].sent
                    if delta := self._glued(self.texts[chunk].pending(), first):
                        yield delta
                continue
            done.add(chunk)
            while self.current in done:
                text = self.texts[self.current]
                first = not text.sent
                if delta := self._glued(text.pending(result_of(self.current).ids), first):
                    yield delta
                self.current += 1
                if self.current < chunks:  # the next chunk may have decoded tokens already
                    text = self.texts[self.current]
                    if delta := self._glued(text.pending(), not text.sent):
                        yield delta


async def transcript_events(stream: DeltaStream, result_of: Callable[[int], EngineResult],
                            finish: Callable[[], Awaitable[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The SSE bytes of a streamed transcription: deltas, then ``finish()``'s done event."""
    async for delta in stream.deltas(result_of):
        yield sse({"type": "transcript.text.delta", "delta": delta})
    yield sse(await finish())
