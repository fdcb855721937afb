"""Log-mel filterbank features of padded batches, normalised per utterance over valid frames only.

Two normalisations: ``mel-bin`` (mean and variance of each mel bin over the utterance, classic
CMVN) and ``global`` (one mean and variance over all bins and frames: only the level is removed,
the spectral shape is kept). CMVN also removes what a short clip says (the mean spectrum of a
one-word clip is mostly that word), so ``global`` + random-EQ augmentation generalises better to
new voices when utterances are short.

Shape legend: b = batch, s = samples, n = feature frames, m = mel bins.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from nue_core.lengths import conv_output_lengths, length_mask


def frame_lengths(sample_lengths: torch.Tensor, win: int, hop: int) -> torch.Tensor:
    """(b,) valid samples -> (b,) STFT frames that lie wholly inside the valid samples."""
    # An uncentred STFT frames the samples as an unpadded conv of kernel win and stride hop would.
    return conv_output_lengths(sample_lengths, win, hop)


class LogMel(nn.Module):
    """Waveform (b, s) -> log-mel features (b, n, m), per-utterance mean/variance normalised.

    STFT frames are not centred (no reflection padding), so a frame never reads padding and a
    padded batch gives each item the features it gets alone.
    """

    def __init__(self, sample_rate: int, n_mels: int, win_ms: float, hop_ms: float,
                 normalization: Literal["mel-bin", "global"] = "mel-bin") -> None:
        super().__init__()
        self.normalization = normalization
        from transformers.audio_utils import mel_filter_bank

        self.win = int(round(sample_rate * win_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        # n_fft = window: a frame then reads exactly its window's samples (a larger, zero-padded
        # FFT would make torch read n_fft samples per frame and change the frame count).
        self.n_fft = self.win
        bank = mel_filter_bank(num_frequency_bins=self.n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
                               max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("bank", torch.tensor(bank, dtype=torch.float32), persistent=False)  # (freq, m)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waveforms (b, s), lengths (b,) -> features (b, n, m) (zeros at padding), frames (b,)."""
        frames = frame_lengths(lengths, self.win, self.hop)
        if waveforms.shape[1] < self.win:
            return waveforms.new_zeros(waveforms.shape[0], 0, self.bank.shape[1]), frames
        # Features are computed in float32 whatever the model's dtype (a bfloat16 FFT and log lose
        # too much); the buffers may have been cast along with the model.
        spec = torch.stft(waveforms.float(), self.n_fft, self.hop, self.win, self.window.float(), center=False,
                          return_complex=True)  # (b, freq, n)
        power = spec.abs().pow(2).transpose(1, 2)  # (b, n, freq)
        feats = torch.log(power @ self.bank.float() + 1e-6)  # (b, n, m)
        return normalize(feats, frames, per_bin=self.normalization == "mel-bin"), frames


def normalize(feats: torch.Tensor, lengths: torch.Tensor, per_bin: bool = True, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per utterance over the valid frames; padding zeroed.

    per_bin: statistics per mel bin (b, 1, m); otherwise one mean and variance per utterance (b, 1, 1).
    """
    mask = length_mask(lengths, feats.shape[1])[..., None].to(feats.dtype)  # (b, n, 1)
    dims = (1,) if per_bin else (1, 2)
    count = (mask.sum(dim=1, keepdim=True) * (1 if per_bin else feats.shape[2])).clamp(min=1)
    mean = (feats * mask).sum(dim=dims, keepdim=True) / count
    var = ((feats - mean).pow(2) * mask).sum(dim=dims, keepdim=True) / count
    return (feats - mean) / (var + eps).sqrt() * mask


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, freq_masks: int, freq_width: int,
                 time_masks: int, time_width: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment: zero random mel bands and time spans inside each item's valid frames (training only)."""
    batch, width, bins = feats.shape
    keep = torch.ones_like(feats)
    for i in range(batch):
        valid = int(lengths[i])
        for _ in range(freq_masks):
            size = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(bins - size, 0) + 1, (1,), generator=generator))
            keep[i, :, start : start + size] = 0
        for _ in range(time_masks if valid > 1 else 0):
            size = int(torch.randint(0, min(time_width, valid // 5) + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(valid - size, 0) + 1, (1,), generator=generator))
            keep[i, start : start + size, :] = 0
    return feats * keep
