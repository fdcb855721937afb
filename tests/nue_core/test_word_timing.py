"""Timed words from token spans: piece joining, edge refinements, overlap merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nue_core.alignment import TokenSpan, forced_align
from nue_core.word_timing import RAW, Refinement, Word, group_words, words_from_spans

PIECES = {0: "▁hel", 1: "lo", 2: "▁world", 3: "▁", 4: "7", 5: "Ġfoo", 6: "bar", 7: "あ", 8: "い", 9: " up"}
FRAME = 0.08  # seconds per CTC frame: 50 Hz encoder, conv bridge stride 2 x 2


def span(token: int, start: int, end: int, confidence: float = 0.5) -> TokenSpan:
    return TokenSpan(token, start, end, confidence)


def texts(spans: list[TokenSpan], unmarked: str = "token") -> list[str]:
    return [text for text, _ in group_words(spans, PIECES.__getitem__, unmarked)]  # type: ignore[arg-type]


def test_sentencepiece_pieces_join_into_words() -> None:
    spans = [span(0, 1, 2), span(1, 3, 4), span(2, 6, 7)]
    assert texts(spans) == ["hello", "world"]
    # A lone "▁" starts the word the next piece continues; a trailing one is dropped.
    assert texts([span(3, 0, 1), span(4, 1, 2), span(0, 3, 4), span(3, 5, 6)]) == ["7", "hel"]


def test_byte_bpe_and_space_markers() -> None:
    assert texts([span(6, 0, 1), span(5, 2, 3), span(6, 4, 5), span(9, 6, 7)]) == ["bar", "foobar", "up"]


def test_unmarked_pieces_follow_the_rule() -> None:
    spans = [span(7, 0, 1), span(8, 2, 3)]
    assert texts(spans, "token") == ["あ", "い"]
    assert texts(spans, "join") == ["あい"]


def test_raw_times_confidence_and_offset() -> None:
    spans = [span(0, 1, 2, 0.9), span(1, 3, 4, 0.5), span(2, 6, 8, 0.4)]
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, offset_s=10.0, refine=RAW)
    assert [w.word for w in words] == ["hello", "world"]
    assert [w.start for w in words] == pytest.approx([10.08, 10.48])
    assert [w.end for w in words] == pytest.approx([10.32, 10.64])
    assert [w.confidence for w in words] == pytest.approx([0.7, 0.4])


def test_end_extends_to_next_word_and_is_capped() -> None:
    spans = [span(0, 1, 2), span(2, 5, 6), span(0, 20, 21)]
    refine = Refinement(extend_start=False, max_end_extension_s=0.4)  # 5 frames
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, refine=refine, num_frames=23)
    frames = [(round(w.start / FRAME), round(w.end / FRAME)) for w in words]
    # up to the next word's first frame; capped at 5 frames; capped by the last frame.
    assert frames == [(1, 5), (5, 11), (20, 23)]


def test_evidence_stops_extension_and_moves_start_back() -> None:
    spans = [span(0, 3, 4), span(2, 12, 13)]
    speech = np.zeros(16, dtype=bool)
    speech[1:7] = True  # "hello" is voiced over frames 1..6
    speech[11:14] = True
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=16)
    frames = [(round(w.start / FRAME), round(w.end / FRAME)) for w in words]
    assert frames == [(1, 7), (11, 14)]
    # Each switch off on its own changes only its edge.
    no_start = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=16,
                                refine=Refinement(extend_start=False))
    assert [(round(w.start / FRAME), round(w.end / FRAME)) for w in no_start] == [(3, 7), (12, 14)]
    no_evidence = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=16,
                                   refine=Refinement(use_evidence=False))
    assert [(round(w.start / FRAME), round(w.end / FRAME)) for w in no_evidence] == [(3, 10), (12, 16)]  # 0.5 s = 6 frames


def test_refined_words_never_overlap() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        starts = np.sort(rng.choice(60, size=6, replace=False))
        spans = [span(int(rng.choice([0, 2])), int(s), int(s) + 1) for s in starts]
        speech = rng.random(64) > 0.3
        words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=64)
        for a, b in zip(words, words[1:]):
            assert a.start < a.end <= b.start + 1e-9


def test_from_forced_alignment() -> None:
    labels = [10, 0, 10, 1, 10, 10, 2, 10, 10]  # blank = 10
    lp = torch.full((len(labels), 11), -9.0)
    lp[torch.arange(len(labels)), torch.tensor(labels)] = 0.0
    spans = forced_align(lp.log_softmax(-1), [0, 1, 2], blank=10)
    assert spans is not None
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, num_frames=len(labels))
    assert [w.word for w in words] == ["hello", "world"]
    assert words[0].end == pytest.approx(6 * FRAME)  # extended up to "world"'s spike
    assert words[1].confidence > 0.99


def w(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


def frames_of(words: list[Word], frame: float = FRAME) -> list[tuple[int, int]]:
    return [(round(x.start / frame), round(x.end / frame)) for x in words]


ONLY_TRIM = Refinement(extend_end=False, extend_start=False)
ONLY_START = Refinement(extend_end=False, trim=False)
ONLY_END = Refinement(extend_start=False, trim=False)


def test_trim_drops_unvoiced_frames_at_both_ends_only() -> None:
    spans = [span(0, 2, 8), span(2, 10, 12)]
    speech = np.zeros(14, dtype=bool)
    speech[4:6] = True  # "hello" voiced over 4..5 only; "world" has no speech frame
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=14, refine=ONLY_TRIM)
    assert frames_of(words) == [(4, 6), (10, 12)]  # a span without speech is kept whole
    # A gap inside the span (a stop closure) is kept: only the ends are trimmed.
    speech[6], speech[7] = False, True
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=14, refine=ONLY_TRIM)
    assert frames_of(words)[0] == (4, 8)


def test_start_extension_is_capped_and_stops_at_the_previous_word() -> None:
    speech = np.ones(20, dtype=bool)
    refine = Refinement(extend_end=False, trim=False, max_start_extension_s=3 * FRAME)
    words = words_from_spans([span(0, 10, 11)], PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=20,
                             refine=refine)
    assert frames_of(words) == [(7, 11)]  # 3 frames back at most
    words = words_from_spans([span(0, 2, 4), span(2, 5, 6)], PIECES.__getitem__, FRAME, speech_evidence=speech,
                             num_frames=20, refine=refine)
    assert frames_of(words) == [(0, 4), (4, 6)]  # never into the previous word
    # Without evidence the start never moves.
    words = words_from_spans([span(0, 10, 11)], PIECES.__getitem__, FRAME, num_frames=20, refine=refine)
    assert frames_of(words) == [(10, 11)]


def test_end_extension_stops_at_silence_and_evidence_switch_turns_it_off() -> None:
    speech = np.zeros(20, dtype=bool)
    speech[3:9] = True
    spans = [span(0, 3, 4), span(2, 15, 16)]
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=20, refine=ONLY_END)
    assert frames_of(words) == [(3, 9), (15, 16)]
    blind = Refinement(extend_start=False, trim=False, use_evidence=False)
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=20, refine=blind)
    assert frames_of(words) == [(3, 10), (15, 20)]  # 0.5 s cap = 6 frames; then the last frame


def test_raw_ignores_evidence() -> None:
    spans = [span(0, 3, 4), span(2, 12, 13)]
    speech = np.ones(16, dtype=bool)
    words = words_from_spans(spans, PIECES.__getitem__, FRAME, speech_evidence=speech, num_frames=16, refine=RAW)
    assert frames_of(words) == [(3, 4), (12, 13)]


def test_fine_evidence_grid_places_edges_inside_a_ctc_frame() -> None:
    # Spans scaled onto a grid of 8 evidence frames per CTC frame (as item_words does).
    steps = 8
    spans = [span(0, 2 * steps, 3 * steps)]
    speech = np.zeros(6 * steps, dtype=bool)
    speech[13:35] = True  # speech from 1.625 to 4.375 CTC frames
    words = words_from_spans(spans, PIECES.__getitem__, FRAME / steps, speech_evidence=speech, num_frames=6 * steps)
    assert (words[0].start, words[0].end) == pytest.approx((13 * FRAME / steps, 35 * FRAME / steps))


class _Encoder:
    """fbank-transformer's framing without the network: 25 ms window, 20 ms hop, two k3 s2 convs."""

    frame_rate_hz = 12.5

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        frames = torch.div(samples - 400, 320, rounding_mode="floor") + 1
        for _ in range(2):
            frames = torch.div(frames - 3, 2, rounding_mode="floor") + 1
        return frames.clamp_min(0)


class _Bridge:
    strides = [1]


class _Model:
    encoder, bridge, sample_rate = _Encoder(), _Bridge(), 16000


def test_frame_clock_centres_frames_on_their_receptive_field() -> None:
    from nue_core.inference.timestamps import first_frame_centre_s, frame_clock

    model = _Model()
    # Encoder frame 0 reads 6 hops + 1 window = 2320 samples (145 ms): centred at 72.5 ms.
    assert first_frame_centre_s(model.encoder, 16000) == pytest.approx(0.0725)
    # Bridge kernel 3, no padding: 2 frames lost, one per edge; CTC frame f <-> encoder frame f + 1.
    clock = frame_clock(model, encoder_frames=40, ctc_frames=38)
    assert clock.frame_s == pytest.approx(0.08)
    assert clock.offset_s == pytest.approx(0.0725 + 0.04)  # centre of encoder frame 1 minus half a frame
    assert clock.samples(1.0, 16000) == round((0.1125 + 0.08) * 16000)


def test_energy_evidence_follows_the_loud_samples_and_ignores_the_noise_floor() -> None:
    from nue_core.inference.timestamps import Evidence, FrameClock, energy_evidence

    rng = np.random.default_rng(0)
    wave = rng.normal(0, 1e-3, 16000).astype(np.float32)  # 1 s, noise at -60 dBFS
    wave[4000:8000] += 0.3 * np.sin(np.arange(4000) * 0.2).astype(np.float32)  # speech 0.25-0.5 s
    clock = FrameClock(0.0, 0.08)
    speech = energy_evidence(torch.from_numpy(wave), clock, 12, 16000, Evidence(steps=8))
    on = np.flatnonzero(speech)
    assert on[0] == 25 and on[-1] == 49  # 10 ms evidence frames: 0.25 s .. 0.5 s
    # Pure noise: its own floor, so nothing is speech however wide the range.
    assert not energy_evidence(torch.from_numpy(wave[:3000]), clock, 4, 16000, Evidence(steps=8)).any()
