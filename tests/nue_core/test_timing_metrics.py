"""Word timing scores: only correctly recognised words are timed; errors, biases and midpoints."""

from __future__ import annotations

import pytest

from nue_core.data.manifest_base import ReferenceWord as W
from nue_core.timing_metrics import matched_pairs, timing_scores


def test_only_equal_words_are_paired_in_order() -> None:
    ref = [W("one", 0.0, 0.5), W("two", 0.6, 1.0), W("three", 1.1, 1.6)]
    hyp = [W("One,", 0.05, 0.45), W("too", 0.6, 1.0), W("three", 1.2, 1.7), W("four", 1.8, 2.0)]
    pairs = matched_pairs(ref, hyp, "en")
    assert [p.word for p in pairs] == ["one", "three"]
    assert (pairs[1].true_start, pairs[1].start) == (1.1, 1.2)


def test_scores_are_means_of_signed_and_absolute_errors() -> None:
    ref = [W("a", 0.0, 1.0), W("b", 1.0, 2.0)]
    hyp = [W("a", 0.1, 0.9), W("b", 0.7, 2.3)]
    scores = timing_scores(matched_pairs(ref, hyp, "none"), len(ref))
    assert scores.matched_words == 2 and scores.reference_words == 2
    assert scores.mean_abs_start == pytest.approx(0.2) and scores.mean_start_bias == pytest.approx(-0.1)
    assert scores.mean_abs_end == pytest.approx(0.2) and scores.mean_end_bias == pytest.approx(0.1)
    assert scores.midpoint_inside == 1.0


def test_a_midpoint_outside_the_true_span_counts_against() -> None:
    ref = [W("a", 0.0, 0.4), W("b", 0.5, 1.0)]
    hyp = [W("a", 0.3, 0.7), W("b", 0.5, 1.0)]  # midpoint 0.5: outside [0, 0.4]
    assert timing_scores(matched_pairs(ref, hyp, "none"), 2).midpoint_inside == 0.5


def test_nothing_matched_gives_no_averages() -> None:
    scores = timing_scores(matched_pairs([W("a", 0, 1)], [W("b", 0, 1)], "none"), 1)
    assert scores.matched_words == 0 and scores.mean_abs_start is None and scores.midpoint_inside is None
    assert matched_pairs([W("a", 0, 1)], [], "none") == []
