"""Packing variable-length segments (prefix, speech, postfix, target) into one padded sequence.

Each item's segments are laid end to end with no gaps, so position ids and attention masks of a
padded batch match what each item would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedSequence:
    """A batch of packed segments.

    Attributes:
        embeds: (b, l, d) concatenated segment embeddings, zeros at padding.
        attention_mask: (b, l) 1 at real positions.
        position_ids: (b, l) 0.. along real positions of each item (padding gets 0).
        starts: (b, k) position where segment k of each item starts.
        lengths: (b, k) length of segment k of each item.
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor


def pack_segments(
    segments: list[tuple[torch.Tensor, torch.Tensor]], left_pad: bool = False
) -> PackedSequence:
    """Concatenate per-item valid parts of each segment.

    Args:
        segments: list of (embeds (b, l_k, d), lengths (b,)) pairs; positions at or past an item's
            length are ignored.
        left_pad: put the padding before the items (for generation) instead of after (training).

    Returns:
        PackedSequence with embeds (b, sum_k max_len, d) trimmed to the longest item.
    """
    ref = segments[0][0]
    batch, dim = ref.shape[0], ref.shape[-1]
    lengths = torch.stack([lens.to(ref.device, torch.long) for _, lens in segments], dim=1)  # (b, k)
    totals = lengths.sum(dim=1)  # (b,)
    width = int(totals.max().item()) if batch else 0
    starts = lengths.cumsum(dim=1) - lengths  # (b, k)
    if left_pad:
        starts = starts + (width - totals)[:, None]
    embeds = ref.new_zeros(batch, width, dim)
    for k, (seg, lens) in enumerate(segments):
        steps = torch.arange(seg.shape[1], device=ref.device)
        b_idx, j_idx = (steps[None, :] < lens.to(ref.device)[:, None]).nonzero(as_tuple=True)
        # index_put (not in-place) keeps autograd through every segment.
        embeds = embeds.index_put((b_idx, starts[b_idx, k] + j_idx), seg[b_idx, j_idx].to(embeds.dtype))
    positions = torch.arange(width, device=ref.device)[None, :]
    first = (width - totals)[:, None] if left_pad else torch.zeros_like(totals)[:, None]
    mask = (positions >= first) & (positions < first + totals[:, None])  # (b, l)
    position_ids = (positions - first).clamp(min=0) * mask
    return PackedSequence(embeds, mask.long(), position_ids, starts, lengths)


def pad_ids(sequences: list[list[int]], pad_id: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists. Returns ids (b, l) and lengths (b,)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long, device=device)
    width = int(lengths.max().item()) if sequences else 0
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    return ids, lengths
