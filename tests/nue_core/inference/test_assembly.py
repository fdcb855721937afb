"""Joining a file's chunks: by time with words (each word of an overlap once), by text without."""

from __future__ import annotations

from nue_core.inference.assembly import ChunkOutput, assemble
from nue_core.word_timing import Word

RATE = 10  # samples per second: bounds read as tenths of seconds


def w(text: str, start: float, end: float, token: int) -> Word:
    return Word(text, start, end, 0.9, (token,))


def decode(ids: list[int]) -> str:
    return " ".join(f"t{i}" for i in ids)


def test_overlap_words_are_kept_once_by_the_mid_overlap_boundary() -> None:
    # Chunks [0, 10] s and [8, 18] s: the boundary is 9 s. Word times are from each chunk's start.
    first = ChunkOutput((0, 100), [1, 2, 3], "a b c", [w("a", 1, 2, 1), w("b", 8.2, 8.6, 2), w("c", 9.5, 9.9, 3)])
    second = ChunkOutput((80, 180), [2, 3, 4], "b c d", [w("b", 0.25, 0.65, 2), w("c", 1.45, 1.95, 3),
                                                         w("d", 4, 5, 4)])
    out = assemble([first, second], RATE, 2.0, decode)
    assert [x.word for x in out.words] == ["a", "b", "c", "d"]
    assert [x.start for x in out.words] == [1, 8.2, 9.45, 12]  # b from chunk 1, c from chunk 2
    assert out.text == "t1 t2 t3 t4" and [s.text for s in out.segments] == ["t1 t2", "t3 t4"]
    assert [(s.start, s.end) for s in out.segments] == [(0.0, 9.0), (9.0, 18.0)]


def test_repeated_words_are_not_taken_for_overlap() -> None:
    # "one one one ...": a text match would swallow real words; times keep each once.
    first = ChunkOutput((0, 100), [1] * 4, "one one one one", [w("one", t, t + 0.5, 1) for t in (1, 3, 5, 8.5)])
    second = ChunkOutput((80, 180), [1] * 4, "one one one one", [w("one", t, t + 0.5, 1) for t in (0.5, 3, 5, 7)])
    out = assemble([first, second], RATE, 2.0, decode)
    assert [x.start for x in out.words] == [1, 3, 5, 8.5, 11, 13, 15]


def test_without_words_the_texts_are_joined_and_one_chunk_is_its_own_text() -> None:
    out = assemble([ChunkOutput((0, 100), [1], "a b c d", None), ChunkOutput((80, 180), [2], "c d e f", None)],
                   RATE, 2.0, decode)
    assert out.text == "a b c d e f" and out.words is None
    only = assemble([ChunkOutput((0, 50), [7], "hello", [w("hello", 1, 2, 7)])], RATE, 0.5, decode)
    assert only.text == "hello" and only.words[0].start == 1 and only.segments[0].end == 5.0
