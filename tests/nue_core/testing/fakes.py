"""Toy components for the conformance kit's tests: one correct of each kind and broken variants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nue_core.protocols import BridgeOutput, DecoderOutput, EncoderOutput

HOP = 320  # samples per frame: 50 frames/s at 16 kHz


def _mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None] < lengths[:, None]  # (b, t)


# ----------------------------------------------------------------------------- toy encoder


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
        return sample_lengths // HOP

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        t = waveforms.shape[1] // HOP
        return self.proj(waveforms[:, : t * HOP].reshape(len(waveforms), t, HOP))  # (b, t, d)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        hidden = self.features(waveforms)
        out_lengths = lengths // HOP
        hidden = hidden.masked_fill(~_mask(out_lengths, hidden.shape[1])[..., None], 0.0)
        return EncoderOutput(hidden, out_lengths)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.output_dim}


class TimeNormEncoder(ToyEncoder):
    """Broken: subtracts the mean over the whole padded time axis."""

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden - hidden.mean(dim=1, keepdim=True)


class DetachedEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        return super().features(waveforms).detach()


class UnmaskedEncoder(ToyEncoder):
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.features(waveforms), lengths // HOP)


class UnusedLayerEncoder(ToyEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(2, 2)


class NanGradEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden + torch.sqrt(self.proj.bias.sum() * 0.0)  # adds 0, but d sqrt(0) = inf: NaN grad


# ----------------------------------------------------------------------------- toy bridge


class ToyBridge(nn.Module):
    """Keeps every second frame and projects it; optionally a CTC head over all frames."""

    def __init__(self, in_dim: int, out_dim: int, ctc_vocab: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.freeze_groups = {"proj": ["proj."]}
        self.proj = nn.Linear(in_dim, out_dim)
        self.ctc = nn.Linear(in_dim, ctc_vocab) if ctc_vocab else None

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return (frame_lengths + 1) // 2

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, ::2]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        x = self.proj(self.pooled(hidden))  # (b, n, out_dim)
        n = (lengths + 1) // 2
        x = x.masked_fill(~_mask(n, x.shape[1])[..., None], 0.0)
        ctc = self.ctc(hidden) if self.ctc is not None else None
        return BridgeOutput(x, n, ctc, lengths if ctc is not None else None)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {}


class TimeNormBridge(ToyBridge):
    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        x = super().pooled(hidden)
        return x - x.mean(dim=1, keepdim=True)


class OverlongBridge(ToyBridge):
    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return frame_lengths // 4


class BlockingBridge(ToyBridge):
    """Broken: its output does not depend on the input, so the encoder could never train."""

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(super().pooled(hidden))


# ----------------------------------------------------------------------------- toy decoder


class CharTokenizer:
    chars = " abcdefghijklmnopqrstuvwxyz"
    bos_id, eos_id, pad_id = 1, 2, 0
    vocab_size = len(chars) + 3

    def encode(self, text: str) -> list[int]:
        return [self.chars.index(c) + 3 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3)

    def save(self, folder: Path) -> dict[str, Any]:
        return {}


class ToyDecoder(nn.Module):
    """Causal running mean of (token + position) embeddings over unmasked positions, then a head."""

    def __init__(self, dim: int = 8, tokenizer: Any = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer or CharTokenizer()
        self.embed_dim, self.vocab_size = dim, self.tokenizer.vocab_size
        self.lora_targets = ["head"]
        self.freeze_groups = {"embeddings": ["tokens.", "positions."]}
        self.tokens = nn.Embedding(self.vocab_size, dim)
        self.positions = nn.Embedding(64, dim)
        self.head = nn.Linear(dim, self.vocab_size)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids)

    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)  # (b, l_all, 1)
        return (x * m).cumsum(1) / m.cumsum(1).clamp(min=1)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, cache: Any = None) -> DecoderOutput:
        x = inputs_embeds + self.positions(position_ids)  # (b, l, d)
        values = x if cache is None else torch.cat([cache, x], dim=1)  # (b, l_all, d)
        h = self.mixed(values, attention_mask)[:, -x.shape[1] :]
        return DecoderOutput(self.head(torch.tanh(h)), values)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.embed_dim}


class MaskBlindDecoder(ToyDecoder):
    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().mixed(x, torch.ones_like(mask))


class NoCacheDecoder(ToyDecoder):
    def forward(self, *args: Any, **kwargs: Any) -> DecoderOutput:
        return DecoderOutput(super().forward(*args, **kwargs).logits, None)


class UpperTokenizer(CharTokenizer):
    def decode(self, ids: list[int]) -> str:
        return super().decode(ids).upper()
