"""Padding-safe conv feature extractor for transformers HuBERT / wav2vec2 models.

HuBERT-base and wav2vec2-base use ``feat_extract_norm="group"``: the first conv layer's GroupNorm
normalises each channel over the whole time axis, so the zeros that pad a short utterance inside a
batch change its features everywhere. Here that norm is computed over each item's valid frames only
(``nue_core.masked_norm.masked_group_norm``); every other layer runs exactly as transformers runs it. The convs have no
padding, so a frame within an item's valid length reads only that item's own samples.

Shape legend: b = batch, s = audio samples, c = conv channels, t = frames.
"""

from __future__ import annotations

import torch
from torch import nn

from nue_core.lengths import conv_output_lengths
from nue_core.masked_norm import masked_group_norm


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
