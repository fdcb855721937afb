"""Mean-pool bridge: average every ``pool`` encoder frames, then project to the LLM width.

Shape legend: b = batch, t = encoder frames, n = output vectors = ceil(t / pool), d = width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nue_core.protocols import BridgeOutput
from nue_core.registry import BuildContext


class MeanPoolOptions(BaseModel):
    """Options of the ``mean-pool`` bridge."""

    model_config = ConfigDict(extra="forbid")  # a typo in a config is an error, not a default

    pool: int = Field(4, ge=1, description="encoder frames averaged into one LLM vector")


class MeanPoolBridge(nn.Module):
    """Average-pool ``pool`` frames at a time (padding-aware), then a Linear ``in_dim -> out_dim``.

    The last window of an utterance may be partial: it averages only its valid frames, so an
    utterance gives the same vectors alone or in a padded batch.
    """

    def __init__(self, proj: nn.Linear, pool: int) -> None:
        super().__init__()
        self.proj = proj
        self.pool = pool
        self.in_dim, self.out_dim = proj.in_features, proj.out_features
        self.freeze_groups = {"proj": ["proj."]}
        self.lora_targets: list[str] = []  # nothing worth an adapter: the bridge trains fully
        self.ctc_blank_id: int | None = None  # no CTC head

    @classmethod
    def from_options(cls, options: MeanPoolOptions, ctx: BuildContext) -> MeanPoolBridge:
        """Factory registered with nue: widths come from the composer through ``ctx``."""
        return cls(nn.Linear(ctx.require("in_dim"), ctx.require("out_dim")), options.pool)

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid frames -> (b,) valid vectors: one per started window."""
        return (frame_lengths + self.pool - 1) // self.pool

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> BridgeOutput(embeds (b, n, out_dim), lengths (b,))."""
        b, t, d = hidden.shape
        n = -(-t // self.pool)  # ceil
        valid = torch.arange(n * self.pool, device=hidden.device)[None] < lengths[:, None]  # (b, n*pool)
        x = nn.functional.pad(hidden, (0, 0, 0, n * self.pool - t))  # (b, n*pool, d)
        x = (x * valid[..., None]).view(b, n, self.pool, d).sum(2)  # (b, n, d): padding never counts
        count = valid.view(b, n, self.pool).sum(2, keepdim=True)  # (b, n, 1)
        out_lengths = self.output_lengths(lengths)
        embeds = self.proj(x / count.clamp(min=1))  # (b, n, out_dim)
        # the bias makes empty windows non-zero; padded vectors must be exactly zero
        embeds = embeds.masked_fill(count == 0, 0.0)
        return BridgeOutput(embeds=embeds, lengths=out_lengths)

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this bridge (the widths come from the composer again)."""
        return {"pool": self.pool}
