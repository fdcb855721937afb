"""How far predicted word times are from reference word times (``nue evaluate --timestamps``).

Only words recognised correctly are timed: the hypothesis words are aligned to the reference
words by edit distance (jiwer, after each word is normalised as the error rates normalise text)
and the pairs the alignment calls equal are compared. A substituted word has no true time to
compare with, and its error is already counted by the WER.

Per pair: the start error and end error (predicted minus true, seconds) and whether the predicted
midpoint lies inside the true span (the share of such words is the usual "word placed in the
right spot" figure of alignment papers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nue_core.metrics import normalize
from nue_core.subtitles import TimedWord


@dataclass(frozen=True)
class TimingScores:
    """Timing error over the correctly recognised words of one or more utterances.

    Attributes:
        reference_words: timed reference words compared against.
        matched_words: of those, recognised correctly (the pairs scored below).
        midpoint_inside: share of matched words whose predicted midpoint is inside the true span.
        mean_abs_start, mean_abs_end: mean |predicted - true| of starts and of ends, seconds.
        mean_start_bias, mean_end_bias: mean predicted - true (a constant shift shows here).
    """

    reference_words: int
    matched_words: int
    midpoint_inside: float | None
    mean_abs_start: float | None
    mean_abs_end: float | None
    mean_start_bias: float | None
    mean_end_bias: float | None


@dataclass(frozen=True)
class TimedPair:
    """A reference word and the hypothesis word recognised for it, with their times."""

    word: str
    true_start: float
    true_end: float
    start: float
    end: float

    @property
    def midpoint_inside(self) -> bool:
        return self.true_start <= (self.start + self.end) / 2 <= self.true_end


def _normalised(words: Sequence[TimedWord], language: str) -> list[tuple[str, TimedWord]]:
    """(normalised text, word) for each word that still has text once normalised."""
    out = []
    for word in words:
        text = "".join(normalize(word.word, language).split())  # one token for the aligner
        if text:
            out.append((text, word))
    return out


def matched_pairs(reference: Sequence[TimedWord], hypothesis: Sequence[TimedWord], language: str) -> list[TimedPair]:
    """The (reference, hypothesis) word pairs an edit-distance alignment calls equal.

    Args:
        reference: the true words with their times, in order.
        hypothesis: the predicted words with their times, in order.
        language: normalisation of ``nue_core.metrics`` ('en', 'ja', 'none').
    """
    import jiwer

    ref, hyp = _normalised(reference, language), _normalised(hypothesis, language)
    if not ref or not hyp:
        return []
    result = jiwer.process_words(" ".join(t for t, _ in ref), " ".join(t for t, _ in hyp))
    pairs = []
    for chunk in result.alignments[0]:
        if chunk.type != "equal":
            continue
        for offset in range(chunk.ref_end_idx - chunk.ref_start_idx):
            true = ref[chunk.ref_start_idx + offset][1]
            found = hyp[chunk.hyp_start_idx + offset][1]
            pairs.append(TimedPair(true.word, float(true.start), float(true.end), float(found.start), float(found.end)))
    return pairs


def timing_scores(pairs: Sequence[TimedPair], reference_words: int) -> TimingScores:
    """Scores of ``pairs`` (from ``matched_pairs`` over any number of utterances).

    Args:
        pairs: the matched words.
        reference_words: how many timed reference words the pairs were drawn from.

    Returns:
        the scores; the averages are None when nothing matched.
    """
    n = len(pairs)
    if n == 0:
        return TimingScores(reference_words, 0, None, None, None, None, None)
    starts = [p.start - p.true_start for p in pairs]
    ends = [p.end - p.true_end for p in pairs]
    return TimingScores(
        reference_words=reference_words,
        matched_words=n,
        midpoint_inside=sum(p.midpoint_inside for p in pairs) / n,
        mean_abs_start=sum(map(abs, starts)) / n,
        mean_abs_end=sum(map(abs, ends)) / n,
        mean_start_bias=sum(starts) / n,
        mean_end_bias=sum(ends) / n,
    )
