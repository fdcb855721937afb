"""Padding-safe conv feature extractor for transformers HuBERT / wav2vec2 models.

HuBERT-base and wav2vec2-base use ``feat_extract_norm="group"``: the first conv layer's GroupNorm
normalises each channel over the whole time axis, so the zeros that pad a short utterance inside a
batch change its features everywhere. Here that norm is computed over each item's valid frames only
(a masked group norm); every other layer runs exactly as transformers runs it. The convs have no
padding, so a frame within an item's valid length reads only that item's own samples.

Shape legend: b = batch, s = audio samples, c = conv channels, t = frames.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Valid output frames of an unpadded Conv1d: floor((L - k) / s) + 1, never below 0.

    Shapes: lengths (b,) -> (b,).
    """
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(b,) lengths -> (b, size) bool, True at positions before each length."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


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


def run_feature_extractor(
    feature_extractor: nn.Module,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    kernels: list[int],
    strides: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a transformers ``*FeatureEncoder`` layer by layer with a masked first-layer GroupNorm.

    Args:
        feature_extractor: ``model.feature_extractor`` of a HubertModel / Wav2Vec2Model.
        waveforms: (b, s) float audio.
        lengths: (b,) valid samples per item.
        kernels, strides: ``config.conv_kernel`` / ``config.conv_stride``.
    Returns:
        features (b, c, t) and frame lengths (b,).
    """
    hidden = waveforms[:, None, :]  # (b, 1, s)
    for layer, kernel, stride in zip(feature_extractor.conv_layers, kernels, strides):
        lengths = conv_output_lengths(lengths, kernel, stride)
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):
            hidden = layer.activation(masked_group_norm(layer.conv(hidden), lengths, norm))
        else:
            # LayerNorm (per frame) or no norm: padding cannot leak, run transformers' own layer
            # (which also honours its gradient checkpointing flag).
            hidden = layer(hidden)
    return hidden, lengths
