"""Subtitle lines and writers: limits, monotonic times, valid SRT/WebVTT, verbose JSON shape.

The property tests run 200 hypothesis cases each. The parse-back tests use the ``srt`` and
``webvtt-py`` libraries and skip where they are not installed; the structure tests below them
check the same formats with regular expressions and always run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.subtitles import (
    Segment,
    clean_text,
    join_words,
    lines_from_segments,
    sanitize_times,
    srt_text,
    subtitle_lines,
    to_srt,
    to_verbose_json,
    to_vtt,
    vtt_text,
)

CASES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class W:
    """A stand-in for ``nue_core.word_timing.Word``: subtitles only needs word/start/end."""

    word: str
    start: float
    end: float


# Words mixing Latin, CJK, markup and arrow characters, blanks and newlines; some very long.
_piece = st.text(alphabet=st.sampled_from(list("ab xyZ<>&-\n\r\t日本語かナ。1é\x00")), max_size=12)
_long = st.text(alphabet="abc", min_size=43, max_size=60)
_time = st.floats(0, 120, allow_nan=False)
words_st = st.lists(
    st.builds(lambda w, a, d: W(w, a, a + d), st.one_of(_piece, _long), _time, st.floats(0, 9)), max_size=40
)
duration_st = st.one_of(st.none(), st.floats(0, 150))

SRT_CUE = re.compile(r"(\d+)\n(\d{2,}):(\d\d):(\d\d),(\d{3}) --> (\d{2,}):(\d\d):(\d\d),(\d{3})\n([^\n]+)\n")
VTT_CUE = re.compile(r"(\d{2,}):(\d\d):(\d\d)\.(\d{3}) --> (\d{2,}):(\d\d):(\d\d)\.(\d{3})\n([^\n]+)\n")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _check_times(spans: list[tuple[float, float]], duration: float | None) -> None:
    prev_end = 0.0
    for start, end in spans:
        assert 0 <= prev_end <= start <= end, (prev_end, start, end)
        if duration is not None:
            assert end <= duration + 1e-6  # writers round down to ms; 1e-6 for float error
        prev_end = end


# --- property tests (always run) ---


@CASES
@given(words=words_st, duration=duration_st, max_chars=st.integers(1, 50), max_seconds=st.floats(0.5, 10))
def test_lines_keep_every_word_in_order_and_respect_limits(words, duration, max_chars, max_seconds):
    lines = subtitle_lines(words, max_chars=max_chars, max_seconds=max_seconds, duration=duration)
    pieces = [clean_text(w.word) for w in words]
    assert join_words(line.text for line in lines) == join_words(pieces)
    assert [line.id for line in lines] == list(range(len(lines)))
    single = set(pieces)  # a single word over a limit is allowed its own line
    for line in lines:
        assert len(line.text) <= max_chars or line.text in single
        assert line.end - line.start <= max_seconds + 1e-9 or line.text in single
    _check_times([(s.start, s.end) for s in lines], duration)


@CASES
@given(words=words_st, duration=duration_st)
def test_srt_and_vtt_structure_and_times(words, duration):
    lines = subtitle_lines(words, duration=duration)
    srt_out, vtt_out = to_srt(lines, duration), to_vtt(lines, duration)
    cues = list(SRT_CUE.finditer(srt_out))
    assert "".join(c.group(0) + "\n" for c in cues).rstrip("\n") == srt_out.rstrip("\n")  # nothing else
    assert [int(c.group(1)) for c in cues] == list(range(1, len(lines) + 1))
    assert all("-->" not in c.group(10) for c in cues)
    _check_times([(_seconds(*c.groups()[1:5]), _seconds(*c.groups()[5:9])) for c in cues], duration)
    assert vtt_out.startswith("WEBVTT\n\n") or (not lines and vtt_out == "WEBVTT\n")
    vcues = list(VTT_CUE.finditer(vtt_out))
    assert len(vcues) == len(lines)
    assert all(not re.search(r"[<>]|&(?!amp;|lt;|gt;)", c.group(9)) for c in vcues)
    _check_times([(_seconds(*c.groups()[0:4]), _seconds(*c.groups()[4:8])) for c in vcues], duration)


@CASES
@given(words=words_st, duration=st.floats(0, 150))
def test_verbose_json_shape(words, duration):
    lines = subtitle_lines(words, duration=duration)
    out = json.loads(json.dumps(to_verbose_json("a b", duration, lines, words, language="en")))
    assert set(out) == {"task", "language", "duration", "text", "segments", "words"}
    assert all(set(s) == {"id", "start", "end", "text"} for s in out["segments"])
    assert all(set(w) == {"word", "start", "end"} for w in out["words"])
    _check_times([(s["start"], s["end"]) for s in out["segments"]], duration)
    _check_times([(w["start"], w["end"]) for w in out["words"]], duration)


# --- parse back with subtitle libraries (skip where not installed) ---


@CASES
@given(words=words_st, duration=duration_st)
def test_srt_parses_back_with_srt_library(words, duration):
    srt = pytest.importorskip("srt")
    lines = subtitle_lines(words, duration=duration)
    parsed = list(srt.parse(to_srt(lines, duration)))
    assert [p.content for p in parsed] == [srt_text(s.text) for s in lines]
    assert all(abs(p.start.total_seconds() - s.start) < 1e-3 for p, s in zip(parsed, lines))
    _check_times([(p.start.total_seconds(), p.end.total_seconds()) for p in parsed], duration)


@CASES
@given(words=words_st, duration=duration_st)
def test_vtt_parses_back_with_webvtt_library(words, duration):
    webvtt = pytest.importorskip("webvtt")
    lines = subtitle_lines(words, duration=duration)
    parsed = webvtt.WebVTT.from_string(to_vtt(lines, duration), strict=True)
    assert [c.raw_text for c in parsed.captions] == [vtt_text(s.text) for s in lines]
    spans = [(_seconds(*c.start_time.to_tuple()), _seconds(*c.end_time.to_tuple())) for c in parsed.captions]
    _check_times(spans, duration)


# --- examples ---


def test_splits_at_word_boundaries_under_42_chars():
    text = "the quick brown fox jumps over the lazy dog again and again"
    words = [W(w, i * 0.5, i * 0.5 + 0.4) for i, w in enumerate(text.split())]
    texts = [s.text for s in subtitle_lines(words)]
    assert texts == ["the quick brown fox jumps over the lazy", "dog again and again"]  # 43 chars won't fit


def test_seven_second_limit_and_long_word_alone():
    words = [W("a", 0, 1), W("b", 5, 6.5), W("c", 6.6, 7.5), W("x" * 50, 8, 9), W("d", 9, 10)]
    assert [s.text for s in subtitle_lines(words)] == ["a b", "c", "x" * 50, "d"]


def test_cjk_joins_without_spaces():
    assert join_words(["今日", "は", "GPU", "を", "使う"]) == "今日はGPUを使う"
    assert join_words(["hello", "world", "。"]) == "hello world。"


def test_times_clamped_and_moved_forward():
    assert sanitize_times([(-1, 2), (1.5, 3), (4, 3.5), (9, 12)], duration=10) == [(0, 2), (2, 3), (4, 4), (9, 10)]
    with pytest.raises(ValueError, match="finite"):
        sanitize_times([(0, float("nan"))])


def test_escaping_and_exact_srt_vtt():
    seg = [Segment(0, 0.0, 1.5, "a --> b\n\nc"), Segment(1, 3661.0005, 3662, "x<y & z>")]
    assert to_srt(seg) == (
        "1\n00:00:00,000 --> 00:00:01,500\na -> b c\n\n"
        "2\n01:01:01,000 --> 01:01:02,000\nx<y & z>\n"
    )
    assert to_vtt(seg) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\na --&gt; b c\n\n"
        "01:01:01.000 --> 01:01:02.000\nx&lt;y &amp; z&gt;\n"
    )


def test_segments_kept_as_they_are_without_word_times():
    chunks = [Segment(7, 0, 30, "a long chunk " * 10), Segment(8, 29, 40, " \n"), Segment(9, 29, 45, "end")]
    lines = lines_from_segments(chunks, duration=40)
    assert [(s.id, s.start, s.end) for s in lines] == [(0, 0, 30), (1, 30, 40)]
    assert lines[0].text == clean_text("a long chunk " * 10)


def test_verbose_json_leaves_out_words_when_not_asked():
    out = to_verbose_json(" hi ", 2.0, [Segment(0, 0, 1, "hi")], None)
    assert out == {"task": "transcribe", "language": None, "duration": 2.0, "text": "hi",
                   "segments": [{"id": 0, "start": 0, "end": 1, "text": "hi"}]}


def test_writers_take_any_segment_class():
    @dataclass(frozen=True)
    class Chunk:  # e.g. another module's segment dataclass: writers read only start/end/text
        start: float
        end: float
        text: str

    assert to_srt([Chunk(0, 1, "hi")]) == "1\n00:00:00,000 --> 00:00:01,000\nhi\n"
    assert lines_from_segments([Chunk(0, 1, "hi")]) == [Segment(0, 0, 1, "hi")]
