"""Long audio: cut at quiet points into chunks the model can take, and join the chunk transcripts.

A clip longer than the model's limit (``ModelConfig.max_audio_seconds``, 16 s for Nue-ASR, which
never saw longer clips in training) is split into chunks of at most that length. Each cut is placed
at the quietest frame (lowest RMS) within a search window that ends at the limit, so cuts fall into
pauses rather than words; consecutive chunks share a small overlap so a word cut anyway appears
whole in one of them. ``join_texts`` then removes the words the overlap transcribed twice.

Shape legend: s = samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkPlan:
    """Where to cut a long clip.

    Attributes:
        max_seconds: longest chunk (the model's limit).
        overlap_seconds: audio shared by consecutive chunks.
        search_seconds: cuts are searched within this much audio before the limit.
        frame_seconds, hop_seconds: RMS analysis frame and hop.
    """

    max_seconds: float = 16.0
    overlap_seconds: float = 0.5
    search_seconds: float = 4.0
    frame_seconds: float = 0.025
    hop_seconds: float = 0.010

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_seconds < self.max_seconds - self.search_seconds:
            # Otherwise a chunk could end before the next one starts making progress.
            raise ValueError(
                f"chunking needs 0 <= overlap ({self.overlap_seconds}) < max ({self.max_seconds}) "
                f"- search ({self.search_seconds})"
            )


def frame_rms(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS energy of each frame: samples (s,) -> (frames,), frame i covering [i*hop, i*hop+frame)."""
    if samples.size < frame:
        return np.sqrt(np.mean(np.square(samples, dtype=np.float64), keepdims=True)) if samples.size else np.zeros(0)
    windows = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop]  # (frames, frame)
    return np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))


def quietest_point(samples: np.ndarray, lo: int, hi: int, frame: int, hop: int) -> int:
    """Sample index in [lo, hi] at the centre of the quietest frame; ties go to the latest."""
    rms = frame_rms(samples[lo:hi], frame, hop)
    if rms.size == 0:
        return hi
    # Latest minimum: keeps chunks as long as the limit allows when several frames are silent.
    best = rms.size - 1 - int(np.argmin(rms[::-1]))
    return min(lo + best * hop + frame // 2, hi)


def split_points(samples: np.ndarray, sample_rate: int, plan: ChunkPlan) -> list[tuple[int, int]]:
    """Chunk bounds [(start, end), ...] covering ``samples`` (s,), each at most ``plan.max_seconds``.

    A clip within the limit is one chunk. Chunk i+1 starts ``overlap`` before chunk i ends.
    """
    total, limit = samples.shape[0], int(plan.max_seconds * sample_rate)
    search, overlap = int(plan.search_seconds * sample_rate), int(plan.overlap_seconds * sample_rate)
    frame, hop = max(int(plan.frame_seconds * sample_rate), 1), max(int(plan.hop_seconds * sample_rate), 1)
    bounds, start = [], 0
    while total - start > limit:
        end = quietest_point(samples, start + limit - search, start + limit, frame, hop)
        bounds.append((start, end))
        start = end - overlap
    bounds.append((start, total))
    return bounds


def _units(text: str, by_chars: bool) -> list[str]:
    return list(text.replace(" ", "")) if by_chars else text.split()


# The most a speaker says per second: words for spaced text, characters for text written without
# spaces (fast Japanese runs near 8 morae a second, which kanji write in fewer characters). Bounds
# how many units an overlap of known length can have produced twice.
WORDS_PER_SECOND = 5.0
CHARS_PER_SECOND = 12.0


def join_texts(left: str, right: str, max_skip: int = 2, max_overlap: int = 32, overlap_seconds: float | None = None) -> str:
    """Join two consecutive chunk transcripts, dropping what their shared audio produced twice.

    Finds the longest run of units (words; characters for text written without spaces, such as
    Japanese) that ends ``left`` and begins ``right``. The edges of a chunk are often garbled (a
    word cut mid-way), so the run may also end up to ``max_skip`` units before the end of ``left``
    and start up to ``max_skip`` units into ``right``; those edge units are dropped. Runs that skip
    edge units must be one unit longer than exact ones, so chance matches of a single word are not
    taken for overlap.

    ``overlap_seconds``, when given, caps the run at what that much audio can hold (plus the edge
    units): repetitive speech ("one one one ...") would otherwise match a long run of real,
    distinct words and lose them.

    Returns:
        the joined text; ``left + " " + right`` (no space for character text) when nothing matches.
    """
    if not left.strip() or not right.strip():
        return (left.strip() or right.strip())
    by_chars = " " not in left.strip() and " " not in right.strip() and not _looks_spaced(left + right)
    a, b = _units(left, by_chars), _units(right, by_chars)
    if overlap_seconds is not None:
        rate = CHARS_PER_SECOND if by_chars else WORDS_PER_SECOND
        max_overlap = min(max_overlap, math.ceil(overlap_seconds * rate) + max_skip)
    need = 2 if by_chars else 1
    best: tuple[int, int, int] | None = None  # (run length, units dropped from left, from right)
    for skip_a in range(min(max_skip, len(a)) + 1):
        for skip_b in range(min(max_skip, len(b)) + 1):
            run = _longest_run(a[: len(a) - skip_a], b[skip_b:], max_overlap)
            if run >= need + (1 if skip_a or skip_b else 0):
                key = (run, -(skip_a + skip_b))
                if best is None or key > (best[0], -(best[1] + best[2])):
                    best = (run, skip_a, skip_b)
    if best is None:
        joined = a + b
    else:
        run, skip_a, skip_b = best
        joined = a[: len(a) - skip_a] + b[skip_b + run :]
    return "".join(joined) if by_chars else " ".join(joined)


def _looks_spaced(text: str) -> bool:
    """Single words ("hello") are word text too: treat ASCII-letter text as spaced."""
    return any(c.isascii() and c.isalpha() for c in text)


def _longest_run(a: list[str], b: list[str], max_overlap: int) -> int:
    """Largest k <= max_overlap with a[-k:] == b[:k] (0 if none)."""
    for k in range(min(len(a), len(b), max_overlap), 0, -1):
        if a[len(a) - k :] == b[:k]:
            return k
    return 0


def join_all(texts: list[str], overlap_seconds: float | None = None) -> str:
    """Chunk transcripts of one clip, in order -> one transcript (see ``join_texts``)."""
    out = ""
    for text in texts:
        out = join_texts(out, text, overlap_seconds=overlap_seconds) if out else text.strip()
    return out
