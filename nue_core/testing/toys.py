"""The kit's own tiny parts, each written exactly to ``nue_core.protocols``.

The checks compose the component under test with these into a ``SpeechLM`` (an encoder under test
gets a toy bridge and decoder, and so on), so a component that passes really trains and generates
beside any other conforming part. Plugin authors may use them the same way in their own tests.

Shape legend: b = batch, s = audio samples, t = frames, n = bridge vectors, l = tokens (cached +
new), d = width, v = vocabulary size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nue_core.protocols import BridgeOutput, DecoderOutput, EncoderOutput

HOP = 320  # samples per ToyEncoder frame: 50 frames/s at 16 kHz
CHARS = " abcdefghijklmnopqrstuvwxyz"
MAX_POSITIONS = 4096  # ToyDecoder's position table: longer than any prompt + output the kit decodes


def _valid(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None] < lengths[:, None]  # (b, t)


class CharTokenizer:
    """Characters of ``CHARS`` as ids 3..; pad 0, bos 1, eos 2. Ids past the alphabet decode to "".

    Args:
        vocab_size: total ids (at least 4); a smaller one keeps a prefix of the alphabet and
            ``encode`` drops the characters it lacks.
    """

    bos_id, eos_id, pad_id = 1, 2, 0

    def __init__(self, vocab_size: int = len(CHARS) + 3) -> None:
        if vocab_size < 4:
            raise ValueError(f"CharTokenizer needs vocab_size >= 4 (pad, bos, eos, one char), got {vocab_size}")
        self.vocab_size = vocab_size
        self.chars = CHARS[: vocab_size - 3]

    def encode(self, text: str) -> list[int]:
        return [self.chars.index(c) + 3 for c in text if c in self.chars]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 3] for i in ids if 3 <= i < 3 + len(self.chars))

    def id_to_piece(self, id: int) -> str:
        """The character of ``id`` (a space is a word marker); "" for pad, bos, eos and unknown ids."""
        return self.decode([id])

    def save(self, folder: Path) -> dict[str, Any]:
        return {}  # nothing on disk: the alphabet is fixed


class ToyEncoder(nn.Module):
    """Cuts the waveform into HOP-sample frames and projects each: no frame sees another."""

    frame_rate_hz = 50.0
    sample_rate = 16000

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.output_dim = dim
        self.freeze_groups = {"proj": ["proj."]}
        self.proj = nn.Linear(HOP, dim)

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) samples -> (b,) frames: whole frames only."""
        return sample_lengths // HOP

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(b, s) -> (b, t, d), padding included."""
        t = waveforms.shape[1] // HOP
        return self.proj(waveforms[:, : t * HOP].reshape(len(waveforms), t, HOP))

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """waveforms (b, s), lengths (b,) -> hidden (b, t, d) zero past ``lengths // HOP``."""
        hidden = self.features(waveforms)
        out_lengths = lengths.to(hidden.device) // HOP
        hidden = hidden.masked_fill(~_valid(out_lengths, hidden.shape[1])[..., None], 0.0)
        return EncoderOutput(hidden, out_lengths)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.output_dim}


class ToyBridge(nn.Module):
    """Keeps every second frame and projects it; optionally a CTC head over every frame.

    Args:
        in_dim, out_dim: frame and output widths.
        ctc_vocab: V > 0 adds a CTC head of V + 1 classes, blank last (``ctc_blank_id`` = V), as
            the composer's ``ctc_vocab_size`` asks; 0: no head.
    """

    def __init__(self, in_dim: int, out_dim: int, ctc_vocab: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.freeze_groups = {"proj": ["proj."]}
        self.proj = nn.Linear(in_dim, out_dim)
        self.ctc = nn.Linear(in_dim, ctc_vocab + 1) if ctc_vocab else None
        self.ctc_blank_id: int | None = ctc_vocab if ctc_vocab else None

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) frames -> (b,) vectors: every second frame, the first included."""
        return (frame_lengths + 1) // 2

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        """(b, t, in_dim) -> (b, ceil(t / 2), in_dim)."""
        return hidden[:, ::2]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> embeds (b, n, out_dim) [+ ctc_logits (b, t, V + 1)]."""
        x = self.proj(self.pooled(hidden))  # (b, n, out_dim)
        n = (lengths.to(x.device) + 1) // 2
        x = x.masked_fill(~_valid(n, x.shape[1])[..., None], 0.0)
        ctc = self.ctc(hidden) if self.ctc is not None else None
        return BridgeOutput(x, n, ctc, lengths if ctc is not None else None)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {}


class ToyDecoder(nn.Module):
    """Causal running mean of (token + position) embeddings over unmasked positions, then a head.

    Its cache is the (b, l_cache, d) inputs seen so far: a step appends to it, so a step with the
    cache gives exactly the logits of a full forward.

    Args:
        dim: embed_dim.
        tokenizer: default ``CharTokenizer(vocab_size)``; its vocab_size is the decoder's.
        vocab_size: used only without ``tokenizer``.
    """

    def __init__(self, dim: int = 8, tokenizer: Any = None, vocab_size: int = len(CHARS) + 3) -> None:
        super().__init__()
        self.tokenizer = tokenizer if tokenizer is not None else CharTokenizer(vocab_size)
        self.embed_dim, self.vocab_size = dim, int(self.tokenizer.vocab_size)
        self.lora_targets = ["head"]
        self.freeze_groups = {"embeddings": ["tokens.", "positions."]}
        self.tokens = nn.Embedding(self.vocab_size, dim)
        self.positions = nn.Embedding(MAX_POSITIONS, dim)
        self.head = nn.Linear(dim, self.vocab_size)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b, l) -> (b, l, d)."""
        return self.tokens(ids)

    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Running mean of x (b, l, d) over positions where mask (b, l) is 1."""
        m = mask[..., None].to(x.dtype)  # (b, l, 1)
        return (x * m).cumsum(1) / m.cumsum(1).clamp(min=1)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache: Any = None, use_cache: bool | None = None) -> DecoderOutput:
        """inputs_embeds (b, l_new, d), attention_mask (b, l_cache + l_new), position_ids (b, l_new)
        -> logits (b, l_new, v) and the cache (b, l_cache + l_new, d); no cache without use_cache
        (training passes neither cache nor use_cache)."""
        x = inputs_embeds + self.positions(position_ids)  # (b, l_new, d)
        values = x if cache is None else torch.cat([cache, x], dim=1)  # (b, l_cache + l_new, d)
        h = self.mixed(values, attention_mask)[:, -x.shape[1] :]
        return DecoderOutput(self.head(torch.tanh(h)), values if use_cache else None)

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """The cache's rows picked by ``index`` (b',): beam search expands and reorders with it."""
        return cache.index_select(0, index.to(cache.device))

    def join_caches(self, caches: list[Any]) -> Any:
        """Rows of ``caches`` (b_i, l_i, d) in order, each left-padded with zeros to the longest l."""
        width = max(c.shape[1] for c in caches)
        return torch.cat([torch.nn.functional.pad(c, (0, 0, width - c.shape[1], 0)) for c in caches])

    def trim_cache(self, cache: Any, count: int) -> Any:
        """The cache without its first ``count`` positions."""
        return cache[:, count:]

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.embed_dim}
