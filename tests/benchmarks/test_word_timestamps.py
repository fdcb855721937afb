"""benchmarks/word_timestamps.py: the scorer on spans with known answers, the builder and a small run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCH))  # word_timestamps imports fsdd_timed as a sibling
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


wt = _module("word_timestamps")
timed = _module("fsdd_timed")
FSDD = timed.default_fsdd()
needs_fsdd = pytest.mark.skipif(not (FSDD / "recordings").is_dir(),
                                reason=f"FSDD recordings not found under {FSDD} (set NUE_FSDD)")


def test_score_on_known_spans() -> None:
    refs = [(["one", "two", "three"], [(0.1, 0.5), (0.7, 1.0), (1.2, 1.6)])]
    # "two" is misrecognised ("too"): only "one" and "three" are scored.
    hyps = [[("one", 0.15, 0.45), ("too", 0.7, 1.0), ("three", 1.1, 1.8)]]
    s = wt.score(refs, hyps)
    assert s.correct == 2 and s.inside == 1.0
    assert s.start_abs == pytest.approx((0.05 + 0.1) / 2) and s.end_abs == pytest.approx((0.05 + 0.2) / 2)
    assert s.start_bias == pytest.approx((0.05 - 0.1) / 2) and s.end_bias == pytest.approx((-0.05 + 0.2) / 2)
    assert s.wer == pytest.approx(1 / 3)
    assert not s.passes()  # 150 ms mean end error
    # A midpoint outside its span counts; an inserted word shifts nothing; an unaligned file is all deletions.
    late = wt.score(refs, [[("one", 0.45, 0.65), ("six", 0.6, 0.65), ("two", 0.7, 1.0), ("three", 1.2, 1.6)]])
    assert late.correct == 3 and late.inside == pytest.approx(2 / 3) and late.wer == pytest.approx(1 / 3)
    assert wt.score(refs, [None]).correct == 0 and wt.score(refs, [None]).wer == 1.0


@needs_fsdd
def test_builder_spans_match_the_clips() -> None:
    paths = timed.recordings(FSDD, ("yweweler",))
    files = timed.build(paths, 3, seed=1)
    again = timed.build(paths, 3, seed=1)
    for f, g in zip(files, again):
        np.testing.assert_array_equal(f.audio, g.audio)  # seeded
        assert 2 <= len(f.words) <= 6 and len(f.spans) == len(f.words)
        edges = [x for span in f.spans for x in span]
        assert edges == sorted(edges) and edges[0] >= 0.05 and edges[-1] <= f.audio.shape[0] / 16000 - 0.05
        # Between clips lies the faint noise floor; inside a span, speech.
        a, b = f.spans[0]
        gap = f.audio[int(b * 16000) + 40 : int(f.spans[1][0] * 16000) - 40]
        assert np.sqrt(np.mean(f.audio[int(a * 16000) : int(b * 16000)] ** 2)) > 20 * np.sqrt(np.mean(gap**2))


@needs_fsdd
def test_small_run_scores_every_setting() -> None:
    files = timed.build(timed.recordings(FSDD, ("yweweler",)), 4, seed=0)
    scores = wt.run(files)
    assert set(scores) == set(wt.settings())
    default, raw = scores["all (default)"], scores["raw"]
    assert default.correct == raw.correct > 0  # same transcripts, re-timed
    assert default.end_abs < raw.end_abs  # the CTC spike ends words early; refinement fixes it
    assert "| all (default) |" in wt.table(scores)
