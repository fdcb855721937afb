"""Per-request search state of the continuous-batching engine: greedy or beam, one step at a time.

Each request decides its tokens with the very functions the static ``greedy`` / ``beam_search``
use (``nue_core.generation``), fed only its own rows' scores, so a request decodes exactly as it
would alone.

Shape legend: r = rows of the running batch, k = beams per request, v = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from nue_core.generation import GenerationConfig, Hyps, best_hypothesis, greedy_update, select_beams


@dataclass
class StepChoice:
    """What one request does after a step.

    Attributes:
        rows: rows of the running batch (local to the request: 0..k-1) that continue, in order.
        tokens: the token each continuing row is fed next (same length as ``rows``).
        new_tokens: tokens of the final hypothesis known from this step (for ``on_token``).
        done: the request has its final ids (``ids``); its rows leave the batch.
    """

    rows: list[int]
    tokens: list[int]
    new_tokens: list[int]
    done: bool


@dataclass
class GreedySearch:
    """One greedy item: one row."""

    limit: int
    cfg: GenerationConfig
    eos: int
    output: list[int] = field(default_factory=list)
    step: int = 0

    rows = 1

    def row_scores(self, device: torch.device) -> torch.Tensor | None:
        """Greedy rows carry no running score."""
        return None

    def choose(self, token: int) -> StepChoice:
        """File this step's argmax ``token`` (as ``greedy`` does)."""
        self.step += 1
        before = len(self.output)
        done = greedy_update(self.output, token, self.limit, self.cfg, self.eos)
        new = self.output[before:]
        return StepChoice([] if done else [0], [] if done else [token], new, done)

    @property
    def ids(self) -> list[int]:
        return self.output


class BeamSearch:
    """One beam-search item: ``k`` rows (dead beams included, as ``beam_search`` keeps them)."""

    def __init__(self, limit: int, cfg: GenerationConfig, eos: int) -> None:
        self.limit, self.cfg, self.eos, self.rows = limit, cfg, eos, cfg.num_beams
        self.step = 0
        self.scores = torch.full((self.rows,), float("-inf"))  # (k,) summed log-probs, float32 as in beam_search
        self.scores[0] = 0.0  # all beams start identical: only the first may expand at step 0
        self.seqs: list[list[int]] = [[] for _ in range(self.rows)]
        self.finished = Hyps(self.rows)
        self._ids: list[int] | None = None

    def row_scores(self, device: torch.device) -> torch.Tensor:
        """(k,) running scores of this request's rows."""
        return self.scores.to(device)

    def choose(self, top_scores: list[float], top_idx: list[int], vocab: int) -> StepChoice:
        """File this step's ``2k`` best candidates (over k * v) and pick the next beams."""
        self.step += 1
        choice = select_beams(top_scores, top_idx, vocab, self.rows, self.seqs, self.finished, self.limit,
                              self.eos, self.cfg)
        scores = torch.full((self.rows,), float("-inf"))
        scores[: choice.live] = torch.tensor(choice.scores, dtype=scores.dtype)
        # ``beam_search`` stops an item that is full; one whose beams all died changes no more
        # (every later candidate is -inf), so it can end now with the same result.
        if self.finished.full or choice.live == 0:
            self._ids = best_hypothesis(self.finished, choice.seqs, scores, self.cfg)
            return StepChoice([], [], list(self._ids), True)
        self.scores, self.seqs = scores, choice.seqs
        return StepChoice(choice.beams, choice.tokens, [], False)

    @property
    def ids(self) -> list[int]:
        if self._ids is None:  # ended before any step (a limit of 0): what beam_search returns then
            return best_hypothesis(self.finished, self.seqs, self.scores, self.cfg)
        return self._ids


Search = GreedySearch | BeamSearch


def new_search(limit: int, cfg: GenerationConfig, eos: int) -> Search:
    """The search ``SpeechLM.generate`` would run for one item with this config."""
    if cfg.num_beams > 1 or cfg.force_beam_search:
        return BeamSearch(limit, cfg, eos)
    return GreedySearch(limit, cfg, eos)


TokenCallback = Callable[[int], None]
