"""Segment and word timestamps of transcripts (``transcribe(..., timestamps="segment" | "word")``).

Segments are the chunks the transcriber decoded (long audio is cut at quiet points): one per
chunk, a clip within the model's limit is one segment spanning the whole clip.

Words come from the bridge's CTC head: the decoded token ids are force-aligned
(``nue_core.alignment.align_batch``) to the frame-wise CTC log-probabilities of the same audio,
and grouped into words by their pieces (``nue_core.word_timing``). Decoding is not changed: the
text is the same with and without timestamps. ``SpeechLM.generate`` does not hand back the
bridge output it computed, so word timing runs the encoder and bridge a second time on the batch.

CTC frame -> time: a bridge may downsample the encoder frames (stride) and lose frames at the
edges (a convolution without padding). The stride is the product of the bridge's ``strides``
when it has them, else encoder frames / CTC frames rounded; the frames lost are split evenly
between both edges, so CTC frame f starts at encoder frame ``lost / 2 + f * stride``.

Shape legend: b = batch, s = samples, t = CTC frames, c = CTC classes (vocabulary + blank).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from nue_core.alignment import align_batch
from nue_core.errors import ConfigError
from nue_core.subtitles import Segment  # one home; a chunk's segment: the boundary is mid-overlap
from nue_core.word_timing import Word, words_from_spans

Timestamps = Literal["segment", "word"]
KINDS = ("segment", "word")


def check_timestamps(model: torch.nn.Module, timestamps: str | None) -> None:
    """Raise ConfigError for an unknown kind, or for "word" on a model without a CTC head."""
    if timestamps is None:
        return
    if timestamps not in KINDS:
        raise ConfigError(f"timestamps {timestamps!r}: expected None, 'segment' or 'word'")
    if timestamps == "word" and getattr(model.bridge, "ctc_blank_id", None) is None:
        raise ConfigError(f"word timestamps need a CTC head on the bridge and this model's bridge "
                          f"({type(model.bridge).__name__}) has none; use timestamps='segment', or a model "
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


@torch.inference_mode()
def word_times(
    model: torch.nn.Module, waves: torch.Tensor, lengths: torch.Tensor, ids: list[list[int]]
) -> list[list[Word] | None]:
    """Timed words of each item of a batch, times in seconds from the item's start.

    Args:
        model: a SpeechLM whose bridge has a CTC head (``check_timestamps``).
        waves: (b, s) audio at the model's rate, right-padded, on the model's device and dtype.
        lengths: (b,) valid samples.
        ids: b lists of decoded token ids (``SpeechLM.generate`` output).

    Returns:
        b entries: the item's words (``[]`` for an empty transcript), or None when its tokens
        cannot be aligned to its frames (more tokens than frames).
    """
    blank = int(model.bridge.ctc_blank_id)
    speech = model.encode_speech(waves, lengths)
    if speech.ctc_logits is None or speech.ctc_lengths is None:
        raise ConfigError(f"{type(model.bridge).__name__} declares a CTC head but returned no ctc_logits")
    log_probs = speech.ctc_logits.float().log_softmax(dim=-1).cpu()  # (b, t, c)
    ctc_lengths = speech.ctc_lengths.cpu()
    tokens = [alignable(x, model, blank) for x in ids]
    spans = align_batch(log_probs, ctc_lengths, tokens, blank)
    enc_lengths = model.encoder.output_lengths(lengths.cpu()).tolist()
    rate = float(model.encoder.frame_rate_hz)
    out: list[list[Word] | None] = []
    for item, (found, enc, ctc) in enumerate(zip(spans, enc_lengths, ctc_lengths.tolist())):
        if found is None:
            out.append(None)
            continue
        stride = ctc_stride(model, int(enc), int(ctc))
        lost = max(0, int(enc) - stride * int(ctc))
        out.append(words_from_spans(found, model.tokenizer.id_to_piece, stride / rate, (lost / 2) / rate,
                                    num_frames=int(ctc)))
    return out
