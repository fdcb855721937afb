"""Length bookkeeping of padded batches: padding masks and strided-conv output lengths.

Every part works on padded batches with a ``(b,)`` tensor of valid lengths beside them; these are
the few formulas they all need, written once so that an encoder, a bridge and the core agree on
which positions are padding. Plugins import them from here (a plugin never imports another one).

Shape legend: b = batch, t = positions along the padded axis (samples, frames or tokens).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """True at the valid positions of a padded axis.

    Args:
        lengths: (b,) valid positions per item (any integer dtype; values above ``size`` are fine).
        size: length t of the padded axis.

    Returns:
        (b, t) bool on ``lengths.device``, ``mask[i, j] = j < lengths[i]``.
    """
    positions = torch.arange(size, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """Valid outputs of one strided convolution (or unpadded STFT): floor((L + 2p - k) / s) + 1, at least 0.

    An empty input stays empty even when ``padding`` would give the conv something to read: a clip
    without frames should not turn into vectors made of padding and bias.

    Args:
        lengths: (b,) valid input positions (any integer dtype).
        kernel, stride, padding: of the convolution along the length axis.

    Returns:
        (b,) valid output positions (int64).
    """
    lengths = lengths.long()
    out = torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1
    return torch.where(lengths > 0, out.clamp_min(0), torch.zeros_like(out))


def conv_stack_lengths(lengths: torch.Tensor, kernels: Iterable[int], strides: Iterable[int]) -> torch.Tensor:
    """Valid outputs of unpadded convolutions run one after the other (a wav2vec2-style front end).

    Shapes: lengths (b,) -> (b,) int64.
    """
    for kernel, stride in zip(kernels, strides, strict=True):
        lengths = conv_output_lengths(lengths, kernel, stride)
    return lengths.long()


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """``conv_output_lengths`` of one plain int (a fixed axis such as mel bins; no tensor, so it
    also works while a model is built on the meta device)."""
    return max((size + 2 * padding - kernel) // stride + 1, 0) if size > 0 else 0


def max_length(lengths: torch.Tensor) -> int:
    """Largest value of (b,) lengths as an int, 0 for an empty batch (one host sync)."""
    return int(lengths.max()) if lengths.numel() > 0 else 0
