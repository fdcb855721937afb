"""The running batch of the continuous-batching engine: decoding rows with their KV cache.

Rows join (a batch of freshly prefilled prompts), leave (finished or cancelled requests) and
advance one token per step. Each row keeps its own attention mask and positions, so a row's
logits are those it would have alone:

- joining left-pads the shorter cache with masked positions (``Decoder.join_caches``);
- leaving is a row selection (``Decoder.reorder_cache``, as beam search reorders);
- leading positions masked for every remaining row are cut (``Decoder.trim_cache``), so the cache
  holds no more than the longest live row needs.

The CTC prefix scorer (joint decoding) travels with the rows: its per-row log-probs and forward
variables are joined, selected and trimmed alike (frames past a row's clip are -inf).

Shape legend: r = rows, c = cached positions, v = vocabulary, t = CTC frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nue_core.ctc_prefix import CTCPrefixScorer, CTCPrefixState
from nue_core.errors import NueError
from nue_core.generation import DecodeState

CACHE_METHODS = ("join_caches", "trim_cache")


class CacheJoiningUnsupported(NueError, TypeError):
    """The decoder lacks the optional cache methods continuous batching needs."""


def supports_joining(decoder: Any) -> bool:
    """Whether ``decoder`` implements ``SupportsCacheJoining`` (continuous batching can run it)."""
    return all(callable(getattr(decoder, m, None)) for m in CACHE_METHODS)


def check_decoder_supports_joining(decoder: Any) -> None:
    """Raise CacheJoiningUnsupported naming the missing methods (``SupportsCacheJoining``)."""
    if not supports_joining(decoder):
        missing = [m for m in CACHE_METHODS if not callable(getattr(decoder, m, None))]
        raise CacheJoiningUnsupported(
            f"{type(decoder).__name__} has no {' or '.join(missing)}: continuous batching joins and trims KV "
            "caches; implement nue_core.protocols.SupportsCacheJoining, or decode with SpeechLM.generate")


@dataclass
class Rows:
    """Live decoding rows.

    Attributes:
        state: cache, mask (r, c), next positions (r,) and the logits (r, v) that pick each row's
            next token.
        ctc: the joint-decoding scorer over these rows, or None.
        ctc_state: its prefix state (r rows), or None.
    """

    state: DecodeState
    ctc: CTCPrefixScorer | None = None
    ctc_state: CTCPrefixState | None = None

    @property
    def count(self) -> int:
        return int(self.state.mask.shape[0])

    @property
    def width(self) -> int:
        """c: positions held per row (the cache length)."""
        return int(self.state.mask.shape[1])

    def lengths(self) -> torch.Tensor:
        """(r,) real positions of each row (prompt + fed tokens)."""
        return self.state.mask.sum(dim=1)


def join(decoder: Any, parts: list[Rows]) -> Rows:
    """The rows of ``parts`` in order; masks left-padded with 0 to the widest."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.width for p in parts)
    masks = [torch.nn.functional.pad(p.state.mask, (width - p.width, 0)) for p in parts]
    state = DecodeState(decoder.join_caches([p.state.cache for p in parts]), torch.cat(masks),
                        torch.cat([p.state.next_pos for p in parts]), torch.cat([p.state.logits for p in parts]))
    if parts[0].ctc is None:
        return Rows(state)
    return Rows(state, CTCPrefixScorer.concat([p.ctc for p in parts]),  # type: ignore[misc]
                CTCPrefixState.concat([p.ctc_state for p in parts]))  # type: ignore[misc]


def select(decoder: Any, rows: Rows, keep: torch.Tensor) -> Rows:
    """Rows ``keep`` (r',) of ``rows`` (repeats allowed), CTC state unchanged (cancellation)."""
    state = rows.state
    picked = DecodeState(decoder.reorder_cache(state.cache, keep), state.mask[keep], state.next_pos[keep],
                         state.logits[keep])
    if rows.ctc is None:
        return Rows(picked)
    return Rows(picked, rows.ctc.expand(keep), rows.ctc_state.select(keep) if rows.ctc_state is not None else None)


def continue_rows(decoder: Any, rows: Rows, keep: torch.Tensor, tokens: torch.Tensor,
                  extension: tuple | None) -> Rows:
    """After a step: rows ``keep`` (r',) continue, extended by ``tokens`` (r',): select, trim, feed.

    The CTC state advances as in ``greedy`` / ``beam_search`` (``CTCPrefixScorer.advance``).
    """
    ctc_state = None
    if rows.ctc is not None:
        ctc_state = rows.ctc.advance(rows.ctc_state, extension, keep, tokens)  # type: ignore[arg-type]
    picked = select(decoder, Rows(rows.state, rows.ctc, None), keep)
    picked = trim(decoder, Rows(picked.state, picked.ctc, ctc_state))
    return Rows(picked.state.advance(decoder, tokens), picked.ctc, picked.ctc_state)


def trim(decoder: Any, rows: Rows) -> Rows:
    """Cut leading positions masked for every row (and CTC frames past every row's clip)."""
    live = rows.state.mask.any(dim=0)  # (c,)
    dead = int(live.long().argmax()) if bool(live.any()) else 0  # first column some row uses
    state = rows.state
    if dead:
        state = DecodeState(decoder.trim_cache(state.cache, dead), state.mask[:, dead:], state.next_pos, state.logits)
    if rows.ctc is None:
        return Rows(state)
    ctc = rows.ctc.trim()
    ctc_state = rows.ctc_state.trim(ctc.frames) if rows.ctc_state is not None else None
    return Rows(state, ctc, ctc_state)
