"""Validation: loss and greedy-decoded CER/WER over a held-out set.

Shape legend: b = batch, s = audio samples.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch

from nue_core.data.batching import make_batches
from nue_core.generation import GenerationConfig
from nue_core.model import SpeechLM
from nue_core.train.data import UtteranceSet


def normalize_text(text: str) -> str:
    """Lower case, whitespace collapsed: the comparison CER/WER are computed on."""
    return re.sub(r"\s+", " ", text.lower()).strip()


def error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """(CER, WER) over a corpus (edit distance totals / reference length totals), via jiwer."""
    import jiwer

    refs = [normalize_text(r) for r in references]
    hyps = [normalize_text(h) for h in hypotheses]
    # jiwer refuses an empty reference; validation data never has one (empty texts are rejected).
    return float(jiwer.cer(refs, hyps)), float(jiwer.wer(refs, hyps))


@dataclass
class ValidationResult:
    """Mean loss (per batch), corpus CER/WER and a few (reference, hypothesis) examples."""

    loss: float
    cer: float
    wer: float
    items: int
    examples: list[tuple[str, str]] = field(default_factory=list)

    def metric(self, name: str) -> float:
        return {"loss": self.loss, "cer": self.cer, "wer": self.wer}[name]


@torch.no_grad()
def validate(
    model: SpeechLM, data: UtteranceSet, batch_seconds: float, generation: GenerationConfig,
    max_items: int | None = None, autocast: Callable[[], ContextManager] | None = None,
) -> ValidationResult:
    """Loss and greedy CER/WER of ``model`` on ``data`` (model switched to eval and back).

    Args:
        batch_seconds: padded seconds per batch (batches in length order, so little padding).
        generation: decoding settings (greedy, token limits).
        max_items: decode at most N items (evenly spread over the set) to bound the time.
        autocast: factory of the mixed-precision context (e.g. ``accelerator.autocast``).
    """
    was_training = model.training
    model.eval()
    losses, refs, hyps = [], [], []
    batches = make_batches(data.durations, batch_seconds, seed=0, epoch=0, shuffle=False)
    if max_items is not None:
        keep = set(range(len(data))[:: max(1, math.ceil(len(data) / max_items))])
        batches = [[i for i in b if i in keep] for b in batches]
        batches = [b for b in batches if b]
    device = model.device
    try:
        for indices in batches:
            batch = data.batch(indices)
            if not batch.ids:
                continue  # every item unreadable (left out under skip_bad)
            wave, lengths = batch.waveforms.to(device), batch.lengths.to(device)
            with autocast() if autocast is not None else contextlib.nullcontext():
                out = model(wave, lengths, model.target_ids(batch.texts))
                ids = model.generate(wave, lengths, generation)
            losses.append(float(out.loss))
            refs += batch.texts
            hyps += [model.tokenizer.decode(seq) for seq in ids]
    finally:
        model.train(was_training)
    if not refs:  # nothing could be read: no metric to report (the best model is left as it is)
        return ValidationResult(math.nan, math.nan, math.nan, 0)
    cer, wer = error_rates(refs, hyps)
    loss = sum(losses) / max(len(losses), 1)
    return ValidationResult(loss, cer, wer, len(refs), list(zip(refs, hyps))[:5])
