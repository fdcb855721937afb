"""The CTC-compress bridge (Gaido et al., EACL 2021, arXiv:2102.01578).

Shape legend: b = batch, t = conv frames, n = merged vectors, d = LLM width, v = CTC classes.

The conv bridge's stack (kernel [4, 4], stride [2, 2] by default, so it starts from the released
Nue-ASR bridge's frame rate and can load its weights: same ``convs.*`` / ``proj.*`` keys) produces
frames at the LLM width; a CTC head labels each frame; runs of consecutive frames with the same
argmax label are averaged into one vector. ``ctc_logits`` are returned for the frames before the
merge, where the caller computes the CTC loss.

The segmentation (argmax) has no gradient; the merge is a (weighted) average, so the LLM loss
reaches the frames, hence the conv stack and projection (with ``merge: weighted`` it also reaches
the CTC head through the weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from nue_bridges.conv import ConvBridge, ConvStackOptions, ctc_classes
from nue_core.lengths import length_mask, max_length
from nue_core.protocols import BridgeOutput
from nue_core.registry import BuildContext

MergeMode = Literal["mean", "weighted"]
BlankMode = Literal["drop", "merge"]


class CTCCompressOptions(ConvStackOptions):
    """Options of the ``ctc-compress`` bridge (the conv stack's, plus how to merge)."""

    merge: MergeMode = Field(
        "mean", description="'mean' of a run's frames, or 'weighted' by each frame's max CTC probability"
    )
    blank: BlankMode = Field(
        "drop", description="'drop' runs labelled blank, or 'merge' them into vectors (as in the paper)"
    )


def merge_runs(
    frames: torch.Tensor,
    logits: torch.Tensor,
    lengths: torch.Tensor,
    blank_id: int,
    merge: MergeMode = "mean",
    blank: BlankMode = "drop",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average runs of consecutive frames with the same argmax CTC label.

    Runs are found on the full label sequence, so ``a blank a`` gives two ``a`` vectors, as CTC
    decoding would. An item left with no run (all blank, ``drop``) keeps one vector: the mean of
    all its valid frames, so the LLM still gets a speech prompt. Items without frames get none.

    Args:
        frames: (b, t, d) frame vectors.
        logits: (b, t, v) CTC logits of those frames.
        lengths: (b,) valid frames.
        blank_id: index of the blank class.
        merge: 'mean' or 'weighted' (weights = max softmax probability of each frame).
        blank: 'drop' or 'merge' blank runs.

    Returns:
        (b, n, d) merged vectors, zero past each item's count, and the (b,) counts.
    """
    b, t, d = frames.shape
    valid = length_mask(lengths, t)  # (b, t)
    labels = logits.argmax(-1)  # (b, t)
    starts = torch.ones_like(valid)
    starts[:, 1:] = labels[:, 1:] != labels[:, :-1]  # (b, t): first frame of each run
    keep = valid & (labels != blank_id) if blank == "drop" else valid
    starts = starts & keep
    counts = starts.sum(1)  # (b,)
    # Fallback: an item with frames but no kept run becomes one segment over all its frames.
    fallback = (counts == 0) & (lengths > 0)
    keep = torch.where(fallback[:, None], valid, keep)
    segment = torch.where(fallback[:, None], 0, starts.long().cumsum(1) - 1)  # (b, t)
    counts = torch.where(fallback, 1, counts)
    n = max_length(counts)
    if merge == "weighted":
        weights = logits.softmax(-1).amax(-1)  # (b, t)
    else:
        weights = torch.ones_like(labels, dtype=frames.dtype)
    # Flat slot of each kept frame in a (b * n) table; sums and weights gathered by index_add.
    item = torch.arange(b, device=frames.device)[:, None].expand(b, t)
    slot = (item * n + segment)[keep]  # (k,)
    w = weights[keep].to(frames.dtype)  # (k,)
    sums = frames.new_zeros(b * n, d).index_add(0, slot, frames[keep] * w[:, None])
    totals = frames.new_zeros(b * n).index_add(0, slot, w)
    merged = sums / torch.where(totals > 0, totals, 1)[:, None]  # empty slots: 0 / 1 = 0
    return merged.reshape(b, n, d), counts


class CTCCompressBridge(ConvBridge):
    """Conv bridge + CTC head + merge of same-label runs.

    Attributes:
        merge, blank: see ``CTCCompressOptions``.
        ctc_blank_id: the blank class, V (the decoder vocabulary size).
        last_compression_ratio: detached 0-d tensor, merged vectors / frames of the last forward
            (over the batch); None before the first call.
        length_depends_on_content: True: ``output_lengths`` is only an upper bound.
    """

    length_depends_on_content = True

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        ctc_vocab_size: int,
        *,
        kernel_sizes: list[int] | tuple[int, ...] = (4, 4),
        strides: list[int] | tuple[int, ...] = (2, 2),
        padding: int = 0,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        merge: MergeMode = "mean",
        blank: BlankMode = "drop",
    ) -> None:
        super().__init__(in_dim, out_dim, kernel_sizes=kernel_sizes, strides=strides, padding=padding,
                         hidden_dim=hidden_dim, dropout=dropout, ctc_vocab_size=ctc_vocab_size)
        self.merge, self.blank = merge, blank
        self.last_compression_ratio: torch.Tensor | None = None

    @classmethod
    def from_options(cls, options: CTCCompressOptions, ctx: BuildContext) -> "CTCCompressBridge":
        """Factory registered as ``ctc-compress``; needs the composer's ``ctc_vocab_size``."""
        vocab = ctc_classes(ctx) - 1
        return cls(ctx.require("in_dim"), ctx.require("out_dim"), vocab, **options.model_dump())

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this bridge (no files needed)."""
        return {**self._stack_options(), "merge": self.merge, "blank": self.blank}

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> merged embeds (b, n, out_dim) + frame CTC logits.

        Returns:
            BridgeOutput with embeds (b, n, out_dim), lengths (b,) merged counts, ctc_logits
            (b, t', V + 1) and ctc_lengths (b,) over the conv frames before merging.
        """
        frames, frame_lengths = self.frames(hidden, lengths)  # (b, t', d)
        logits = self.ctc_logits(frames, frame_lengths)  # (b, t', v)
        assert self.ctc_blank_id is not None
        embeds, counts = merge_runs(frames, logits, frame_lengths, self.ctc_blank_id, self.merge, self.blank)
        self.last_compression_ratio = (counts.sum() / frame_lengths.sum().clamp_min(1)).detach()
        return BridgeOutput(embeds=embeds, lengths=counts, ctc_logits=logits, ctc_lengths=frame_lengths)
