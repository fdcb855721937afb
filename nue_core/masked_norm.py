"""Normalisations whose statistics cover each item's valid positions only.

A norm over a whole padded axis lets the zeros that pad a short item change its values
everywhere, so the same clip would encode differently alone and in a batch. These compute the
statistics over ``lengths[i]`` positions per item; padded positions come out as 0.

Shape legend: b = batch, s = audio samples, c = channels, t = frames.
"""

from __future__ import annotations

import torch
from torch import nn

from nue_core.lengths import length_mask


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm whose statistics cover each item's first ``lengths[i]`` frames only.

    Matches ``norm(x[i:i+1, :, :lengths[i]])`` on the valid frames; padded frames come out as 0.
    Statistics are taken in float32 (as GroupNorm does under autocast) and cast back.

    Args:
        x: (b, c, t) conv output.
        lengths: (b,) valid frames per item.
        norm: the GroupNorm whose groups, eps and affine parameters apply.
    Returns:
        (b, c, t) normalised tensor.
    """
    b, c, t = x.shape
    groups = norm.num_groups
    mask = length_mask(lengths, t)[:, None, None, :]  # (b, 1, 1, t)
    xg = x.float().reshape(b, groups, c // groups, t)  # (b, g, c/g, t)
    # clamp: an item with no valid frame must not divide by zero (its frames are all masked anyway)
    count = (lengths.clamp(min=1) * (c // groups)).to(xg.dtype)[:, None, None, None]
    mean = torch.where(mask, xg, 0.0).sum(dim=(2, 3), keepdim=True) / count
    centred = torch.where(mask, xg - mean, 0.0)
    var = centred.pow(2).sum(dim=(2, 3), keepdim=True) / count  # biased, as GroupNorm
    y = (centred * torch.rsqrt(var + norm.eps)).reshape(b, c, t).to(x.dtype)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return torch.where(mask.reshape(b, 1, t), y, 0.0)


def normalize_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per item over its valid samples; padding stays 0.

    Args:
        waveforms: (b, s) audio.
        lengths: (b,) valid samples per item.
        eps: added to the variance (1e-7 as transformers' Wav2Vec2FeatureExtractor, 1e-5 as
            s3prl's ``F.layer_norm``).
    Returns:
        (b, s) normalised audio.
    """
    mask = length_mask(lengths, waveforms.shape[1])
    count = lengths.clamp(min=1).to(waveforms.dtype)[:, None]
    mean = torch.where(mask, waveforms, 0.0).sum(1, keepdim=True) / count
    centred = torch.where(mask, waveforms - mean, 0.0)
    var = centred.pow(2).sum(1, keepdim=True) / count
    return centred / torch.sqrt(var + eps)
