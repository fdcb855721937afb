"""transcribe(..., timestamps=...): segments and CTC-aligned words on the embedded default model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import nue_core
from nue_core.errors import ConfigError
from nue_core.inference.timestamps import Segment, segments_of
from nue_core.testing.pipeline import toy_speechlm

EXAMPLES = sorted((Path(nue_core.__file__).parent / "default_model" / "examples").glob("*.wav"))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return nue_core.load("default")


def test_words_are_present_ordered_within_the_clip_and_text_unchanged(model: torch.nn.Module) -> None:
    plain = nue_core.transcribe(model, EXAMPLES, batch_size=4)
    timed = nue_core.transcribe(model, EXAMPLES, batch_size=4, timestamps="word")
    for p, t in zip(plain, timed):
        assert t.ok and t.text == p.text and p.words is None and p.segments is None
        assert t.words and " ".join(w.word for w in t.words) == t.text
        times = [x for w in t.words for x in (w.start, w.end)]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= t.seconds + 1e-6
        assert all(0 < w.confidence <= 1 for w in t.words)
        assert t.segments == [Segment(0, 0.0, t.seconds, t.text)]


def test_batched_words_equal_one_by_one(model: torch.nn.Module) -> None:
    batched = nue_core.transcribe(model, EXAMPLES, batch_size=4, timestamps="word")
    single = nue_core.transcribe(model, EXAMPLES, batch_size=1, timestamps="word")
    for b, s in zip(batched, single):
        assert b.text == s.text
        assert [w.word for w in b.words] == [w.word for w in s.words]
        np.testing.assert_allclose([(w.start, w.end) for w in b.words], [(w.start, w.end) for w in s.words])


def test_segments_only_needs_no_ctc_head(model: torch.nn.Module) -> None:
    result = nue_core.transcribe(model, EXAMPLES[:1], timestamps="segment")[0]
    assert result.words is None and result.segments == [Segment(0, 0.0, result.seconds, result.text)]


def test_words_without_a_ctc_head_raise_a_clear_error_and_segments_work() -> None:
    toy = toy_speechlm()
    with pytest.raises(ConfigError, match="CTC head.*segment timestamps"):
        nue_core.transcribe(toy, [np.zeros(1600, np.float32)], timestamps="word")
    result = nue_core.transcribe(toy, [np.zeros(1600, np.float32)], timestamps="segment")[0]
    assert result.ok and result.words is None and len(result.segments) == 1


def test_unknown_kind_is_refused(model: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="expected None, 'segment' or 'word'"):
        nue_core.transcribe(model, EXAMPLES[:1], timestamps="words")


def test_long_input_gives_absolute_times_across_chunks(model: torch.nn.Module) -> None:
    rate = model.sample_rate
    gap = np.zeros(int(0.4 * rate), np.float32)
    clips = [sf.read(p, dtype="float32")[0] for p in EXAMPLES]
    alone = [r.text.split() for r in nue_core.transcribe(model, clips)]
    parts: list[np.ndarray] = []
    said = 0  # words in the file, as the model reads each clip alone
    while sum(x.shape[0] for x in parts) < 2.2 * model.config.max_audio_seconds * rate:
        for clip, words in zip(clips, alone):
            parts += [clip, gap]
            said += len(words)
    audio = np.concatenate(parts)
    result = nue_core.transcribe(model, [audio], timestamps="word", batch_size=4)[0]
    plain = nue_core.transcribe(model, [audio], batch_size=4)[0]
    assert result.ok and result.chunks >= 3 and len(result.segments) == result.chunks
    assert result.text == plain.text  # timestamps never change the text
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(result.seconds)
    assert all(a.end == b.start for a, b in zip(result.segments, result.segments[1:]))
    assert " ".join(s.text for s in result.segments) == result.text == " ".join(w.word for w in result.words)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and result.words[-1].end <= result.seconds + 1e-6
    assert result.words[-1].start > model.config.max_audio_seconds  # absolute, not chunk-relative
    # Each word once, none lost: a word heard in a chunk overlap is kept by time, so this
    # repetitive speech ("four two one two four eight ...") keeps its length (a text match of the
    # chunk edges took repeated digits for overlap and lost 8 of 64 words here). The model may
    # read a digit differently in context, not a different number of them.
    assert all(b.start >= a.end - 1e-6 for a, b in zip(result.words, result.words[1:]))
    assert abs(len(result.words) - said) <= 2, (len(result.words), said)


def test_segments_of_splits_overlaps_in_the_middle() -> None:
    segments = segments_of([(0, 100), (80, 200), (180, 250)], ["a", "b", "c"], 10)
    assert [(s.start, s.end) for s in segments] == [(0.0, 9.0), (9.0, 19.0), (19.0, 25.0)]
