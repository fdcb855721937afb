"""Length bookkeeping shared by the bridges: padding masks and strided-conv output lengths.

Shape legend: b = batch, t = frames.
"""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """True at valid positions.

    Args:
        lengths: (b,) valid positions per item.
        max_len: size of the padded axis.

    Returns:
        (b, max_len) bool, ``mask[i, j] = j < lengths[i]``.
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """Valid outputs of one Conv1d: floor((L + 2p - k) / s) + 1, clamped at 0.

    An empty input stays empty even when ``padding`` would give the conv something to read:
    a clip without frames should not turn into vectors made of padding and bias.

    Args:
        lengths: (b,) valid input frames (int).

    Returns:
        (b,) valid output frames (int64).
    """
    lengths = lengths.long()
    span = lengths + 2 * padding - kernel
    out = torch.div(span, stride, rounding_mode="floor") + 1
    return torch.where(lengths > 0, out.clamp_min(0), torch.zeros_like(out))


def max_length(lengths: torch.Tensor) -> int:
    """Largest value of (b,) lengths as an int, 0 for an empty batch (one host sync)."""
    return int(lengths.max()) if lengths.numel() > 0 else 0
