"""``fbank-transformer``: log-mel features -> 2 strided convolutions (4x fewer frames) -> Transformer.

The usual from-scratch ASR encoder (ESPnet/SpeechBrain style): far more data-efficient than
learning a raw-waveform front end, so small models train in minutes on a CPU.

Shape legend: b = batch, s = samples, n = feature frames, t = encoder frames, d = width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nue_core.lengths import conv_output_size, conv_stack_lengths, length_mask
from nue_core.protocols import EncoderOutput
from nue_core.registry import BuildContext
from nue_fbank.features import LogMel, frame_lengths, spec_augment


class FbankEncoderOptions(BaseModel):
    """Options of the ``fbank-transformer`` encoder."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(16000, gt=0, description="audio sample rate (Hz)")
    n_mels: int = Field(80, ge=8, description="mel filterbank channels")
    win_ms: float = Field(25.0, gt=0, description="STFT window (ms)")
    hop_ms: float = Field(10.0, gt=0, description="STFT hop (ms); encoder frames are 4 hops")
    normalization: Literal["mel-bin", "global"] = Field(
        "mel-bin", description="per-utterance feature normalisation: 'mel-bin' (CMVN per bin) or 'global' (level only, spectral shape kept)"
    )
    conv_channels: int = Field(64, ge=1, description="channels of the two subsampling convolutions")
    hidden_size: int = Field(144, ge=8, description="Transformer width (output_dim)")
    num_layers: int = Field(4, ge=0, description="Transformer layers")
    num_heads: int = Field(4, ge=1, description="attention heads")
    ffn_size: int = Field(576, ge=8, description="feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout in the Transformer and after subsampling")
    freq_masks: int = Field(2, ge=0, description="SpecAugment: mel bands masked per utterance (training)")
    freq_width: int = Field(15, ge=0, description="SpecAugment: widest mel band mask")
    time_masks: int = Field(2, ge=0, description="SpecAugment: time spans masked per utterance (training)")
    time_width: int = Field(20, ge=0, description="SpecAugment: longest time mask in feature frames (at most 20% of the clip)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "FbankEncoderOptions":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        return self


# The subsampling front end: two unpadded Conv2d of kernel 3, stride 2 over (frames, mel bins).
_SUBSAMPLE_KERNELS, _SUBSAMPLE_STRIDES = (3, 3), (2, 2)


def sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) sinusoidal position encodings (positions start at 0 for every item)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class FbankTransformerEncoder(nn.Module):
    """Log-mel + conv subsampling + pre-LN Transformer; satisfies the ``Encoder`` protocol."""

    def __init__(self, options: FbankEncoderOptions) -> None:
        super().__init__()
        self.options = options
        self.features = LogMel(options.sample_rate, options.n_mels, options.win_ms, options.hop_ms, options.normalization)
        c = options.conv_channels
        self.subsample = nn.Sequential(nn.Conv2d(1, c, 3, 2), nn.GELU(), nn.Conv2d(c, c, 3, 2), nn.GELU())
        mel_out = options.n_mels
        for kernel, stride in zip(_SUBSAMPLE_KERNELS, _SUBSAMPLE_STRIDES):
            mel_out = conv_output_size(mel_out, kernel, stride)
        self.proj = nn.Linear(c * mel_out, options.hidden_size)
        self.dropout = nn.Dropout(options.dropout)
        layer = nn.TransformerEncoderLayer(options.hidden_size, options.num_heads, options.ffn_size, options.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, max(options.num_layers, 1), enable_nested_tensor=False) if options.num_layers else nn.Identity()
        self.final_norm = nn.LayerNorm(options.hidden_size)
        self.output_dim: int = options.hidden_size
        self.sample_rate: int = options.sample_rate
        self.frame_rate_hz: float = options.sample_rate / (4 * self.features.hop)
        self.freeze_groups = {"frontend": ["subsample.", "proj."], "transformer": ["transformer.", "final_norm."]}
        self.lora_targets: list[str] = ["linear1", "linear2"]

    @classmethod
    def from_options(cls, options: FbankEncoderOptions, ctx: BuildContext) -> "FbankTransformerEncoder":
        return cls(options)

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) samples -> (b,) encoder frames (feature frames after two stride-2 convolutions)."""
        frames = frame_lengths(sample_lengths, self.features.win, self.features.hop)
        return conv_stack_lengths(frames, _SUBSAMPLE_KERNELS, _SUBSAMPLE_STRIDES)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """waveforms (b, s), lengths (b,) -> hidden (b, t, d) with padded frames zeroed, lengths (b,)."""
        lengths = lengths.to(waveforms.device).long()
        feats, frames = self.features(waveforms, lengths)  # (b, n, m)
        out_lengths = self.output_lengths(lengths)
        if self.training and (self.options.freq_masks or self.options.time_masks):
            o = self.options
            feats = spec_augment(feats, frames, o.freq_masks, o.freq_width, o.time_masks, o.time_width)
        if feats.shape[1] < 7:  # too short for the two convolutions
            return EncoderOutput(feats.new_zeros(feats.shape[0], 0, self.output_dim), out_lengths)
        x = self.subsample(feats[:, None].to(self.proj.weight.dtype))  # (b, c, t, m')
        x = self.proj(x.permute(0, 2, 1, 3).flatten(2))  # (b, t, d)
        # Scale the features up before adding positions (as in the original Transformer and ESPnet):
        # otherwise the unit-amplitude sinusoids drown the small projected features at init.
        x = self.dropout(x * math.sqrt(self.output_dim) + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype))
        mask = length_mask(out_lengths, x.shape[1])  # (b, t)
        # An item with no frame would make every key masked (NaN); let it attend to position 0.
        pad = ~(mask | (out_lengths == 0)[:, None] & (torch.arange(x.shape[1], device=x.device) == 0)[None])
        if self.options.num_layers:  # nn.TransformerEncoder cannot hold zero layers
            x = self.transformer(x, src_key_padding_mask=pad)
        x = self.final_norm(x)
        return EncoderOutput(x * mask[..., None].to(x.dtype), out_lengths)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return self.options.model_dump()
