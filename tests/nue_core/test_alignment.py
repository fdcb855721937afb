"""CTC forced alignment: Viterbi against brute force over every alignment, batched == per item."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.alignment import AlignmentError, TokenSpan, align_batch, forced_align
from nue_core.errors import NueError

BLANK = 3  # classes 0, 1, 2 are tokens; 3 is the blank (the last class, as in nue-asr heads)


def collapse(frames: tuple[int, ...]) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    return [x for x, _ in itertools.groupby(frames) if x != BLANK]


def path_score(lp: torch.Tensor, frames: list[int]) -> float:
    return sum(float(lp[f, c]) for f, c in enumerate(frames))


def brute_best(lp: torch.Tensor, tokens: list[int]) -> float | None:
    """Best score over every frame labelling that collapses to ``tokens`` (None: there is none)."""
    scores = [path_score(lp, list(p)) for p in itertools.product(range(BLANK + 1), repeat=lp.shape[0])
              if collapse(p) == tokens]
    return max(scores) if scores else None


def frames_of(spans: list[TokenSpan], t: int) -> list[int]:
    """The frame labelling the spans describe: tokens on their frames, blank elsewhere."""
    frames = [BLANK] * t
    for span in spans:
        frames[span.start_frame : span.end_frame] = [span.token] * (span.end_frame - span.start_frame)
    return frames


def check_spans(spans: list[TokenSpan], tokens: list[int], lp: torch.Tensor) -> None:
    assert [s.token for s in spans] == tokens
    for a, b in zip(spans, spans[1:]):
        assert a.end_frame <= b.start_frame
        if a.token == b.token:
            assert a.end_frame < b.start_frame  # a repeat needs a blank between
    for s in spans:
        assert 0 <= s.start_frame < s.end_frame <= lp.shape[0]
        expected = math.exp(float(lp[s.start_frame : s.end_frame, s.token].mean()))
        assert s.confidence == pytest.approx(expected, rel=1e-6)


# Tiny cases: up to 5 frames of 4 classes is at most 4**5 = 1024 labellings per case.
cases = st.integers(1, 5).flatmap(
    lambda t: st.tuples(
        st.lists(st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=4, max_size=4),
                 min_size=t, max_size=t),
        st.lists(st.integers(0, BLANK - 1), min_size=0, max_size=4),
    )
)


@settings(max_examples=300, deadline=None)
@given(cases)
def test_viterbi_matches_brute_force(case: tuple[list[list[float]], list[int]]) -> None:
    """300 cases: same feasibility and best score as enumerating every alignment."""
    logits, tokens = case
    lp = torch.tensor(logits, dtype=torch.float64).log_softmax(-1)
    spans = forced_align(lp, tokens, BLANK)
    best = brute_best(lp, tokens)
    if best is None:
        assert spans is None
        return
    assert spans is not None
    check_spans(spans, tokens, lp)
    frames = frames_of(spans, lp.shape[0])
    assert collapse(tuple(frames)) == tokens
    assert path_score(lp, frames) == pytest.approx(best, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.lists(cases, min_size=1, max_size=4))
def test_batched_equals_per_item(items: list[tuple[list[list[float]], list[int]]]) -> None:
    """50 batches of 1-4 items with different lengths, padded with garbage frames."""
    t = max(len(logits) for logits, _ in items)
    batch = torch.randn(len(items), t, BLANK + 1, dtype=torch.float64).log_softmax(-1)
    lps = [torch.tensor(logits, dtype=torch.float64).log_softmax(-1) for logits, _ in items]
    for i, lp in enumerate(lps):
        batch[i, : lp.shape[0]] = lp
    lengths = torch.tensor([lp.shape[0] for lp in lps])
    got = align_batch(batch, lengths, [tokens for _, tokens in items], BLANK)
    assert got == [forced_align(lp, tokens, BLANK) for lp, (_, tokens) in zip(lps, items)]


def test_empty_tokens_are_all_blank() -> None:
    lp = torch.randn(6, 4).log_softmax(-1)
    assert forced_align(lp, [], BLANK) == []
    assert align_batch(lp[None], torch.tensor([0]), [[]], BLANK) == [[]]


def test_too_many_tokens_give_none() -> None:
    lp = torch.randn(3, 4).log_softmax(-1)
    assert forced_align(lp, [0, 1, 2, 0], BLANK) is None
    assert forced_align(lp, [1, 1], BLANK) is not None  # 1 blank 1 fits 3 frames
    assert forced_align(lp[:2], [1, 1], BLANK) is None  # ... 2 frames do not
    assert align_batch(lp[None], torch.tensor([0]), [[1]], BLANK) == [None]


def test_repeated_tokens_are_split_by_a_blank() -> None:
    # Frames strongly say "1 1 1 1": a repeat still needs a blank frame to separate the two 1s.
    lp = torch.full((4, 4), -10.0)
    lp[:, 1] = 0.0
    spans = forced_align(lp.log_softmax(-1), [1, 1], BLANK)
    assert spans is not None and spans[0].end_frame < spans[1].start_frame


def test_clear_spikes_are_found() -> None:
    labels = [BLANK, 0, 0, BLANK, BLANK, 2, BLANK, 1]
    lp = torch.full((len(labels), 4), -8.0)
    lp[torch.arange(len(labels)), torch.tensor(labels)] = 0.0
    spans = forced_align(lp.log_softmax(-1), [0, 2, 1], BLANK)
    assert [(s.token, s.start_frame, s.end_frame) for s in spans or []] == [(0, 1, 3), (2, 5, 6), (1, 7, 8)]
    assert all(s.confidence > 0.99 for s in spans or [])


def test_bad_inputs_raise_a_nue_error() -> None:
    lp = torch.randn(4, 4).log_softmax(-1)
    with pytest.raises(AlignmentError, match="equal the blank"):
        forced_align(lp, [BLANK], BLANK)
    with pytest.raises(AlignmentError, match="out of"):
        forced_align(lp, [7], BLANK)
    with pytest.raises(NueError, match="frames, classes"):
        forced_align(lp[None], [0], BLANK)
    with pytest.raises(AlignmentError, match="lengths"):
        align_batch(lp[None], torch.tensor([5]), [[0]], BLANK)


def test_half_precision_input() -> None:
    lp = torch.randn(10, 4).log_softmax(-1)
    spans = forced_align(lp.to(torch.bfloat16), [0, 1], BLANK)
    assert spans is not None and [s.token for s in spans] == [0, 1]
