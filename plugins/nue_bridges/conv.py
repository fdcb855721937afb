"""The conv bridge: strided Conv1d stack + GELU + Linear, the released Nue-ASR bridge.

Shape legend: b = batch, t = encoder frames, n = bridge vectors, d = width, v = CTC classes.

Weight compatibility: the state-dict keys are exactly ``convs.{i}.weight|bias`` and
``proj.weight|bias``, so the released checkpoint's ``bridge_convs.*`` / ``bridge_proj.*`` load by a
prefix rename. With kernel [4, 4], stride [2, 2], no padding, T frames become
floor((floor((T - 4) / 2) + 1 - 4) / 2) + 1 vectors (about one per 80 ms of HuBERT frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nue_core.errors import ConfigError
from nue_core.lengths import conv_output_lengths, length_mask, max_length
from nue_core.protocols import BridgeOutput
from nue_core.registry import BuildContext


class ConvStackOptions(BaseModel):
    """Options of the strided conv front shared by ``conv`` and ``ctc-compress``."""

    model_config = ConfigDict(extra="forbid")

    kernel_sizes: list[int] = Field(
        default_factory=lambda: [4, 4], description="kernel of each Conv1d layer (released Nue-ASR: [4, 4])"
    )
    strides: list[int] = Field(
        default_factory=lambda: [2, 2], description="stride of each Conv1d layer (released Nue-ASR: [2, 2])"
    )
    padding: int = Field(0, ge=0, description="zero padding on both sides of each conv (released: 0)")
    hidden_dim: int | None = Field(
        None, gt=0, description="conv channels; default: the encoder width (as released)"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after each conv's GELU")

    @model_validator(mode="after")
    def _check_layers(self) -> "ConvStackOptions":
        if not self.kernel_sizes:
            raise ValueError("kernel_sizes needs at least one layer")
        if len(self.kernel_sizes) != len(self.strides):
            raise ValueError(
                f"kernel_sizes ({len(self.kernel_sizes)} layers) and strides "
                f"({len(self.strides)} layers) must have the same length"
            )
        if min(self.kernel_sizes) < 1 or min(self.strides) < 1:
            raise ValueError("kernel_sizes and strides must be positive")
        return self


class ConvBridgeOptions(ConvStackOptions):
    """Options of the ``conv`` bridge."""

    ctc_head: bool = Field(
        False, description="add a CTC head (Linear out_dim -> vocab + 1, blank last) over the output"
    )


def ctc_classes(ctx: BuildContext) -> int:
    """CTC classes for a head over the decoder vocabulary: V token ids + one blank (id V)."""
    if ctx.ctc_vocab_size is None:
        raise ConfigError(
            "this bridge has a CTC head but the composer supplied no 'ctc_vocab_size' "
            "(the decoder tokenizer's vocabulary size); compose it with a decoder that has a tokenizer"
        )
    return int(ctx.ctc_vocab_size) + 1


class ConvBridge(nn.Module):
    """Conv1d(k, s) + GELU per layer, then Linear to the LLM width; optional CTC head.

    Attributes:
        in_dim, out_dim: encoder width and LLM width.
        ctc_blank_id: index of the blank class (= vocab size V) or None without a CTC head.
        freeze_groups: ``convs``, ``proj`` (and ``ctc_head``) parameter-name prefixes.
        lora_targets: ``["proj"]``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        kernel_sizes: list[int] | tuple[int, ...] = (4, 4),
        strides: list[int] | tuple[int, ...] = (2, 2),
        padding: int = 0,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        ctc_vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.kernel_sizes, self.strides = list(kernel_sizes), list(strides)
        self.padding = padding
        self.hidden_dim = hidden_dim or in_dim
        widths = [in_dim] + [self.hidden_dim] * len(self.kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], k, stride=s, padding=padding)
            for i, (k, s) in enumerate(zip(self.kernel_sizes, self.strides))
        )
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(self.hidden_dim, out_dim)
        # vocab V -> V + 1 classes with blank last, so token ids are CTC labels unchanged.
        self.ctc_head = nn.Linear(out_dim, ctc_vocab_size + 1) if ctc_vocab_size is not None else None
        self.ctc_blank_id: int | None = ctc_vocab_size
        self.freeze_groups: dict[str, list[str]] = {"convs": ["convs."], "proj": ["proj."]}
        if self.ctc_head is not None:
            self.freeze_groups["ctc_head"] = ["ctc_head."]
        self.lora_targets: list[str] = ["proj"]

    @classmethod
    def from_options(cls, options: ConvBridgeOptions, ctx: BuildContext) -> "ConvBridge":
        """Factory registered as ``conv``: widths from the composer, CTC vocab from the decoder."""
        vocab = ctc_classes(ctx) - 1 if options.ctc_head else None
        return cls(ctx.require("in_dim"), ctx.require("out_dim"), ctc_vocab_size=vocab,
                   **options.model_dump(exclude={"ctc_head"}))

    def _stack_options(self) -> dict[str, Any]:
        return {
            "kernel_sizes": list(self.kernel_sizes),
            "strides": list(self.strides),
            "padding": self.padding,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout.p,
        }

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this bridge (no files needed)."""
        return {**self._stack_options(), "ctc_head": self.ctc_head is not None}

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid encoder frames -> (b,) valid output vectors (exact for this bridge)."""
        lengths = frame_lengths.long()
        for k, s in zip(self.kernel_sizes, self.strides):
            lengths = conv_output_lengths(lengths, k, s, self.padding)
        return lengths

    def frames(self, hidden: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the conv stack and the projection, padding positions zeroed.

        Args:
            hidden: (b, t, in_dim) encoder frames; values past ``lengths`` are ignored.
            lengths: (b,) valid frames.

        Returns:
            (b, n, out_dim) vectors with n = max valid output length, and their (b,) lengths.
        """
        lengths = lengths.to(device=hidden.device, dtype=torch.long)
        x = hidden.transpose(1, 2)  # (b, in_dim, t)
        # Zero the padding: with padding > 0 a valid output reads up to p frames past the end,
        # which must look like the conv's own zero padding, whatever the batch put there.
        x = x * length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        for conv, k, s in zip(self.convs, self.kernel_sizes, self.strides):
            short = max(k - 2 * self.padding, 1) - x.shape[-1]
            if short > 0:  # whole batch shorter than the kernel (or empty): conv1d would raise
                x = F.pad(x, (0, short))
            x = self.dropout(F.gelu(conv(x)))  # (b, hidden, t')
            lengths = conv_output_lengths(lengths, k, s, self.padding)
            x = x * length_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype)
        x = x[:, :, : max_length(lengths)].transpose(1, 2)  # (b, n, hidden)
        x = self.proj(x) * length_mask(lengths, x.shape[1])[:, :, None].to(x.dtype)  # (b, n, out_dim)
        return x, lengths

    def ctc_logits(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(b, n, out_dim) frames -> (b, n, V + 1) CTC logits, zero at padding."""
        assert self.ctc_head is not None, "this bridge was built without a CTC head"
        logits = self.ctc_head(frames)  # (b, n, v)
        return logits * length_mask(lengths, logits.shape[1])[:, :, None].to(logits.dtype)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> embeds (b, n, out_dim) [+ CTC logits (b, n, v)]."""
        embeds, out_lengths = self.frames(hidden, lengths)
        if self.ctc_head is None:
            return BridgeOutput(embeds=embeds, lengths=out_lengths)
        return BridgeOutput(
            embeds=embeds,
            lengths=out_lengths,
            ctc_logits=self.ctc_logits(embeds, out_lengths),
            ctc_lengths=out_lengths,
        )
