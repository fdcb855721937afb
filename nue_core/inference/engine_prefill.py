"""Admission of the continuous-batching engine: encoder, bridge and prompt prefill of new requests.

The admitted clips run together, exactly as ``SpeechLM.generate`` runs a batch: encode, pack the
left-padded prompts, prefill the decoder, build the CTC prefix scorer, and (beam search) expand each
item to ``k`` rows. Only the batch differs, and each item's values do not depend on it.

Shape legend: b = admitted requests, s = audio samples, k = beams, t = CTC frames, c = CTC classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nue_core.generation import GenerationConfig, start_decoding
from nue_core.inference.engine_rows import Rows


@dataclass
class Prefilled:
    """What admission yields.

    Attributes:
        rows: b * rows_per_item rows (item i's rows contiguous), ready for their first token.
        encoder_frames: (b,) encoder output frames per item.
        ctc_log_probs: per item (t_i, c) float32 CPU log-probs, or None without a CTC head.
        ctc_lengths: per item t_i (0 without a CTC head).
    """

    rows: Rows
    encoder_frames: list[int]
    ctc_log_probs: list[torch.Tensor | None]
    ctc_lengths: list[int]


def pad_waveforms(waveforms: list[torch.Tensor], dtype: torch.dtype, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_i,) clips -> right-padded (b, s) and lengths (b,), as ``generate`` takes them."""
    lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()), dtype=dtype)
    for i, w in enumerate(waveforms):
        batch[i, : len(w)] = w.to(dtype)
    return batch.to(device), lengths.to(device)


@torch.no_grad()
def prefill(model: Any, waveforms: list[torch.Tensor], cfg: GenerationConfig, rows_per_item: int) -> Prefilled:
    """Encode and prefill ``waveforms`` (each (s_i,)); ``rows_per_item`` is 1 (greedy) or k (beams)."""
    waves, lengths = pad_waveforms(waveforms, model.input_dtype, model.device)
    speech = model.encode_speech(waves, lengths)
    packed = model.pack_prompt(speech, left_pad=True)
    state = start_decoding(model.decoder, packed)
    scorer = model.ctc_scorer(speech, cfg)
    if rows_per_item > 1 or cfg.force_beam_search:  # as beam_search: every item becomes k rows
        expand = torch.arange(len(waveforms), device=lengths.device).repeat_interleave(rows_per_item)
        state = type(state)(model.decoder.reorder_cache(state.cache, expand), state.mask[expand],
                            state.next_pos[expand], state.logits[expand])
        scorer = scorer.expand(expand) if scorer is not None else None
    rows = Rows(state, scorer, scorer.initial_state() if scorer is not None else None)
    frames = model.encoder.output_lengths(lengths.cpu()).tolist()
    log_probs, ctc_lengths = _ctc_outputs(speech, len(waveforms))
    return Prefilled(rows, [int(f) for f in frames], log_probs, ctc_lengths)


def _ctc_outputs(speech: Any, batch: int) -> tuple[list[torch.Tensor | None], list[int]]:
    """Per item the (t_i, c) CTC log-probs on CPU and t_i; None and 0 without a CTC head."""
    if speech.ctc_logits is None or speech.ctc_lengths is None:
        return [None] * batch, [0] * batch
    log_probs = speech.ctc_logits.float().log_softmax(dim=-1).cpu()  # (b, t, c)
    lengths = [int(n) for n in speech.ctc_lengths.tolist()]
    return [log_probs[i, :n].clone() for i, n in enumerate(lengths)], lengths
