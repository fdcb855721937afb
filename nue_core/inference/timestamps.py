"""Segment and word timestamps of transcripts (``transcribe(..., timestamps="segment" | "word")``).

Segments are the chunks the transcriber decoded (long audio is cut at quiet points): one per
chunk, a clip within the model's limit is one segment spanning the whole clip.

Words come from the bridge's CTC head: the decoded token ids are force-aligned
(``nue_core.alignment.forced_align``) to the frame-wise CTC log-probabilities of the same audio,
and grouped into words by their pieces (``nue_core.word_timing``). Decoding is not changed: the
text is the same with and without timestamps. ``SpeechLM.generate`` does not hand back the
bridge output it computed, so ``word_times`` runs the encoder and bridge a second time on the
batch; ``item_words`` times one item from CTC log-probs its caller kept (a continuous-batching
engine), with no batch.

CTC frame -> time (``frame_clock``): encoder frame j is centred on its receptive field,
``first_frame_centre_s + j / rate`` (an unpadded front end: fbank-transformer frame 0 reads 6
STFT hops + 1 window = 145 ms, centre 72.5 ms). A bridge may downsample (stride: the product of
its ``strides``, else encoder / CTC frames rounded) and lose frames at the edges (a convolution
without padding); the frames lost are split evenly between both edges, so CTC frame f stands for
encoder frames ``lost / 2 + f * stride`` .. ``+ stride``. Default model: CTC frame f covers
[112.5 + 80 f, 192.5 + 80 f) ms.

Edges (``word_timing.Refinement``): a CTC spike marks a word, not its extent. With the item's
samples, speech evidence is frame energy on a grid of ``Evidence.steps`` frames per CTC frame
(10 ms for the default model): within ``energy_range_db`` of the item's loudest frame and
``noise_margin_db`` above its noise floor. Spans are trimmed to it, starts extended back over it
and ends forward over it up to the next word. Measured on held-out FSDD speech
(benchmarks/README.md, "Word timestamps"): raw spans start 63 ms late and end 214 ms early on
average; refined, both mean absolute errors are about 30 ms.

Shape legend: b = batch, s = samples, t = CTC frames, c = CTC classes (vocabulary + blank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nue_core.alignment import TokenSpan, forced_align
from nue_core.errors import ConfigError
from nue_core.subtitles import TIMESTAMP_KINDS, Segment  # one home; a chunk's segment: the boundary is mid-overlap
from nue_core.word_timing import Refinement, Word, words_from_spans

Timestamps = Literal["segment", "word"]
KINDS = TIMESTAMP_KINDS


def check_timestamps(model: torch.nn.Module, timestamps: str | None) -> None:
    """Raise ConfigError for an unknown kind, or for "word" on a model without a CTC head."""
    if timestamps is None:
        return
    if timestamps not in KINDS:
        raise ConfigError(f"timestamps {timestamps!r}: expected None, 'segment' or 'word'")
    if timestamps == "word" and getattr(model.bridge, "ctc_blank_id", None) is None:
        raise ConfigError(f"word timestamps need a CTC head on the bridge and this model's bridge "
                          f"({type(model.bridge).__name__}) has none; ask for segment timestamps, or use a model "
                          "composed with a CTC head (e.g. conv with ctc_head: true, or ctc-compress)")


def segments_of(bounds: list[tuple[int, int]], texts: list[str], sample_rate: int) -> list[Segment]:
    """One Segment per chunk; ``bounds`` are the chunks' (start, end) samples in file order."""
    out = []
    for k, ((a, b), text) in enumerate(zip(bounds, texts)):
        start = a if k == 0 else (a + bounds[k - 1][1]) // 2
        end = b if k + 1 == len(bounds) else (bounds[k + 1][0] + b) // 2
        out.append(Segment(k, start / sample_rate, end / sample_rate, text))
    return out


def alignable(ids: list[int], model: torch.nn.Module, blank: int) -> list[int]:
    """The decoded ids a CTC head can emit: specials (bos, eos, pad, declared) and ids >= blank dropped."""
    tok = model.tokenizer
    special = set(getattr(tok, "special_ids", ())) | {tok.eos_id, tok.pad_id}
    if tok.bos_id is not None:
        special.add(tok.bos_id)
    return [int(i) for i in ids if 0 <= int(i) < blank and int(i) not in special]


def ctc_stride(model: torch.nn.Module, encoder_frames: int, ctc_frames: int) -> int:
    """Encoder frames per CTC frame: the bridge's ``strides`` product, else the rounded ratio."""
    strides = getattr(model.bridge, "strides", None)
    if strides:
        return max(1, math.prod(int(s) for s in strides))
    return max(1, round(encoder_frames / max(ctc_frames, 1)))


@dataclass(frozen=True)
class FrameClock:
    """CTC frame f covers [offset_s + f * frame_s, offset_s + (f + 1) * frame_s) of the item."""

    offset_s: float
    frame_s: float

    def samples(self, frame: float, sample_rate: int) -> int:
        """The sample where (fractional) CTC frame ``frame`` starts, clamped at 0."""
        return max(0, int(round((self.offset_s + frame * self.frame_s) * sample_rate)))


def first_frame_centre_s(encoder: torch.nn.Module, sample_rate: int) -> float:
    """Centre of encoder frame 0's receptive field, in seconds from the item's start.

    Found from ``output_lengths`` alone: the fewest samples that give one encoder frame are the
    samples frame 0 reads (an unpadded front end: STFT frames, strided convolutions), so frame 0
    is centred on half of them. fbank-transformer, 20 ms hop, 25 ms window: 6 STFT frames x 20 ms
    + 25 ms = 145 ms, centre 72.5 ms. A padded front end gives a frame from one sample: centre 0.
    """
    key = (id(encoder), sample_rate)
    if key not in _CENTRES:
        low, high = 0, 1
        while int(encoder.output_lengths(torch.tensor([high]))[0]) < 1:  # doubling, then bisection
            low, high = high, high * 2
            if high > 3600 * sample_rate:
                raise ConfigError(f"{type(encoder).__name__}.output_lengths gives no frame for an hour of audio")
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if int(encoder.output_lengths(torch.tensor([middle]))[0]) >= 1 else (middle, high)
        _CENTRES[key] = high / 2 / sample_rate
    return _CENTRES[key]


_CENTRES: dict[tuple[int, int], float] = {}


def frame_clock(model: torch.nn.Module, encoder_frames: int, ctc_frames: int) -> FrameClock:
    """Where an item's CTC frames lie in its audio (module docstring).

    Encoder frame j is centred at ``first_frame_centre_s + j / rate`` and stands for the 1 / rate
    seconds around its centre; CTC frame f stands for encoder frames ``lost / 2 + f * stride`` ..
    ``+ stride`` (the frames a convolution without padding loses are split between both edges).
    Default model: 72.5 ms + (1 - 0.5) x 80 ms = CTC frame f covers [112.5 + 80 f, 192.5 + 80 f) ms.
    """
    rate = float(model.encoder.frame_rate_hz)
    stride = ctc_stride(model, encoder_frames, ctc_frames)
    lost = max(0, encoder_frames - stride * ctc_frames)
    centre = first_frame_centre_s(model.encoder, int(model.sample_rate))
    return FrameClock(centre + (lost / 2 - 0.5) / rate, stride / rate)


@dataclass(frozen=True)
class Evidence:
    """How ``item_words`` finds the frames with speech that the edge refinements may cover.

    Attributes:
        steps: evidence frames per CTC frame: edges move in steps of ``frame_s / steps`` (10 ms
            for the default model's 80 ms CTC frames), finer than the CTC head can place them.
        energy_range_db: with the item's samples, an evidence frame is speech when its energy is
            within this many dB of the item's loudest frame (and above ``floor_db``).
        floor_db: energy below this (dB re full scale) is never speech.
        noise_margin_db: nor is energy less than this above the item's noise floor (its 5th
            percentile frame), so a wide ``energy_range_db`` does not make a noisy pause speech.
        posterior: without samples, a frame is speech when its non-blank posterior mass exceeds
            this. None (the default): no evidence without samples, so ends extend to the next
            word's spike (capped) and starts stay raw. A CTC head's non-blank mass sits on its
            one-frame spikes, so as evidence it blocks every extension (measured in
            benchmarks/README.md): it is there to be measured, not used.
    """

    steps: int = 8
    energy_range_db: float = 50.0
    floor_db: float = -70.0
    noise_margin_db: float = 10.0
    posterior: float | None = None


def energy_evidence(wave: torch.Tensor, clock: FrameClock, frames: int, sample_rate: int, evidence: Evidence) -> np.ndarray:
    """(s,) samples -> (frames * steps,) bool: speech by frame energy relative to the loudest frame."""
    n = frames * evidence.steps
    bounds = [clock.samples(g / evidence.steps, sample_rate) for g in range(n + 1)]
    x = wave.detach().float().cpu().numpy()
    bounds = [min(b, len(x)) for b in bounds]
    # Frames past the samples (the clock's last frames can reach past them) are not speech and
    # do not count for the noise floor.
    heard = np.array([b > a for a, b in zip(bounds, bounds[1:])], dtype=bool)
    power = np.array([float(np.mean(x[a:b] ** 2)) if b > a else 0.0 for a, b in zip(bounds, bounds[1:])])
    db = 10 * np.log10(power + 1e-12)
    if not heard.any():
        return np.zeros(n, dtype=bool)
    noise = float(np.percentile(db[heard], 5)) + evidence.noise_margin_db
    return heard & (db > max(float(db[heard].max()) - evidence.energy_range_db, evidence.floor_db, noise))


def posterior_evidence(log_probs: torch.Tensor, blank: int, evidence: Evidence) -> np.ndarray | None:
    """(t, c) log-probs -> (t * steps,) bool: non-blank mass above ``evidence.posterior``."""
    if evidence.posterior is None:
        return None
    speech = (1 - log_probs[:, blank].exp()).numpy() > evidence.posterior
    return np.repeat(speech, evidence.steps)


def item_words(
    model: torch.nn.Module,
    log_probs: torch.Tensor,
    ctc_length: int,
    encoder_frames: int,
    ids: list[int],
    waves_item: torch.Tensor | None = None,
    *,
    refine: Refinement = Refinement(),
    evidence: Evidence = Evidence(),
) -> list[Word] | None:
    """Timed words of one item from its own CTC log-probs, times in seconds from its start.

    Args:
        model: the SpeechLM that produced ``log_probs`` (its tokenizer, encoder and bridge set the
            piece rules and the frame clock).
        log_probs: (t, c) float32 ``log_softmax`` of the item's CTC logits; frames past
            ``ctc_length`` are ignored.
        ctc_length: valid CTC frames of the item.
        encoder_frames: the item's encoder frames (``model.encoder.output_lengths``).
        ids: decoded token ids (specials are dropped here).
        waves_item: (s,) the item's samples (no padding needed past its length), for energy
            evidence; None falls back to posterior evidence (``Evidence.posterior``).
        refine: the edge refinements.
        evidence: how speech frames are found.

    Returns:
        The item's words (``[]`` for an empty transcript), or None when its tokens cannot be
        aligned to its frames.
    """
    blank = int(model.bridge.ctc_blank_id)
    lp = log_probs[:ctc_length].float().cpu()
    spans = forced_align(lp, alignable(ids, model, blank), blank)
    if spans is None:
        return None
    clock = frame_clock(model, encoder_frames, ctc_length)
    steps = evidence.steps
    if waves_item is not None:
        speech = energy_evidence(waves_item, clock, ctc_length, int(model.sample_rate), evidence)
    else:
        speech = posterior_evidence(lp, blank, evidence)
    # Edges move on a grid of ``steps`` evidence frames per CTC frame: scale the spans onto it.
    fine = [TokenSpan(s.token, s.start_frame * steps, s.end_frame * steps, s.confidence) for s in spans]
    return words_from_spans(fine, model.tokenizer.id_to_piece, clock.frame_s / steps, clock.offset_s,
                            num_frames=ctc_length * steps, speech_evidence=speech, refine=refine)


@torch.inference_mode()
def word_times(
    model: torch.nn.Module,
    waves: torch.Tensor,
    lengths: torch.Tensor,
    ids: list[list[int]],
    *,
    refine: Refinement = Refinement(),
    evidence: Evidence = Evidence(),
) -> list[list[Word] | None]:
    """Timed words of each item of a batch, times in seconds from the item's start.

    Args:
        model: a SpeechLM whose bridge has a CTC head (``check_timestamps``).
        waves: (b, s) audio at the model's rate, right-padded, on the model's device and dtype.
        lengths: (b,) valid samples.
        ids: b lists of decoded token ids (``SpeechLM.generate`` output).
        refine, evidence: as ``item_words``, which runs once per item.

    Returns:
        b entries: the item's words (``[]`` for an empty transcript), or None when its tokens
        cannot be aligned to its frames (more tokens than frames).
    """
    speech = model.encode_speech(waves, lengths)
    if speech.ctc_logits is None or speech.ctc_lengths is None:
        raise ConfigError(f"{type(model.bridge).__name__} declares a CTC head but returned no ctc_logits")
    log_probs = speech.ctc_logits.float().log_softmax(dim=-1).cpu()  # (b, t, c)
    ctc_lengths = [int(x) for x in speech.ctc_lengths.cpu().tolist()]
    enc_lengths = [int(x) for x in model.encoder.output_lengths(lengths.cpu()).tolist()]
    wave_cpu, sample_lengths = waves.cpu(), [int(x) for x in lengths.cpu().tolist()]
    return [item_words(model, log_probs[i], ctc_lengths[i], enc_lengths[i], ids[i], wave_cpu[i, : sample_lengths[i]],
                       refine=refine, evidence=evidence) for i in range(len(ids))]
