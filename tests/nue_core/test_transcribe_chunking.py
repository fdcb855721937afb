"""Long-audio chunking: cuts at quiet points within the limit, overlap removed when joining texts."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.inference.chunking import ChunkPlan, join_all, join_texts, quietest_point, split_points

SR = 16000


def _speech_like(seconds: float, quiet: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    """Loud noise with silent stretches at the given (start, end) seconds."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR)).astype(np.float32) * 0.3
    for a, b in quiet:
        x[int(a * SR) : int(b * SR)] *= 0.001
    return x


def test_forty_seconds_cut_in_pauses_within_limit_with_overlap():
    audio = _speech_like(40.0, quiet=[(13.0, 13.3), (26.5, 26.8)])
    plan = ChunkPlan(max_seconds=16.0, overlap_seconds=0.5, search_seconds=4.0)
    bounds = split_points(audio, SR, plan)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(audio)
    assert all(b - a <= 16 * SR for a, b in bounds)
    # each cut lands inside a pause and the next chunk starts 0.5 s before it
    assert 13.0 * SR <= bounds[0][1] <= 13.3 * SR
    assert bounds[1][0] == bounds[0][1] - SR // 2
    assert 26.5 * SR <= bounds[1][1] <= 26.8 * SR
    assert len(bounds) == 3


def test_short_clip_is_one_chunk_and_exact_limit_too():
    assert split_points(np.zeros(5 * SR, np.float32), SR, ChunkPlan()) == [(0, 5 * SR)]
    assert split_points(np.zeros(16 * SR, np.float32), SR, ChunkPlan()) == [(0, 16 * SR)]


def test_uniform_audio_cuts_at_the_limit():
    # no pause anywhere: every frame ties, so the cut goes as late as allowed (longest chunks)
    bounds = split_points(np.ones(40 * SR, np.float32), SR, ChunkPlan())
    assert bounds[0][1] > 15.9 * SR and all(b - a <= 16 * SR for a, b in bounds)


def test_quietest_point_picks_lowest_rms_frame():
    x = np.ones(SR, np.float32)
    x[4000:4400] = 0.0
    point = quietest_point(x, 0, SR, frame=400, hop=160)
    assert 4000 <= point <= 4400


def test_join_words_exact_overlap():
    assert join_texts("one two three four", "three four five six") == "one two three four five six"
    assert join_texts("hello", "world") == "hello world"
    assert join_texts("", "world") == "world"
    assert join_texts("hello ", "") == "hello"


def test_join_words_with_garbled_edges():
    # the word cut by the chunk edge came out as 'fo' on the left and is dropped
    assert join_texts("one two three fo", "two three four five") == "one two three four five"
    # a single shared word with edge skipping is too weak evidence: no dedup
    assert join_texts("one two x", "two y") == "one two x two y"


def test_join_characters_for_unspaced_text():
    assert join_texts("今日はいい天気", "い天気ですね") == "今日はいい天気ですね"
    assert join_texts("今日は", "明日は") == "今日は明日は"  # one shared char is not an overlap
    assert join_all(["あいうえお", "えおかきく", "きくけこ"]) == "あいうえおかきくけこ"


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text("abcdefghij", min_size=1, max_size=4), min_size=2, max_size=30, unique=True),
    data=st.data(),
)
def test_join_recovers_unique_word_sequences(words, data):
    cut = data.draw(st.integers(1, len(words) - 1))
    overlap = data.draw(st.integers(0, min(cut, len(words) - cut, 5)))
    left, right = words[: cut + overlap], words[cut:]
    # 'right' starts at cut, 'left' runs overlap words past it: the shared words appear once
    assert join_texts(" ".join(left), " ".join(right)).split() == words


def test_a_short_overlap_cannot_swallow_repeated_words() -> None:
    left, right = "one " * 12 + "one", "one " * 12 + "one"
    # Unbounded, the whole of `right` reads as a repeat of the end of `left`.
    assert len(join_texts(left, right).split()) == 13
    # Half a second of overlap holds at most a few words: the rest are real.
    assert len(join_texts(left, right, overlap_seconds=0.5).split()) == 26 - (math.ceil(0.5 * 5) + 2)
    assert join_all(["a b c d", "c d e f"], overlap_seconds=0.5) == "a b c d e f"
