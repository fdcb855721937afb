"""The Q-Former bridge: learned queries cross-attend to encoder frames (BLIP-2 style).

Shape legend: b = batch, t = encoder frames, w = windows per item, k = frames per window,
q = queries per window, m = non-empty windows in the batch, h = internal width, d = width.

Two modes share one code path. ``window`` (SALMONN): the frames are cut into windows of
``window_frames`` every ``window_stride`` frames and each window gets its own ``num_queries``
queries, so the output length follows the audio. ``global``: one window spanning the whole
utterance, so every non-empty item gets ``num_queries`` vectors.

Windows are moved into the batch dimension and only windows holding at least one valid frame are
computed: a window whose keys are all masked would give NaN in attention, and skipping it also
saves the work. Windows that are all padding give zero vectors and do not count in the length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nue_core.lengths import max_length
from nue_core.protocols import BridgeOutput
from nue_core.registry import BuildContext

DEFAULT_QUERIES = {"global": 32, "window": 1}


class QFormerOptions(BaseModel):
    """Options of the ``qformer`` bridge."""

    model_config = ConfigDict(extra="forbid")

    num_layers: int = Field(2, ge=1, description="Q-Former blocks (self-attn, cross-attn, FFN; pre-LN)")
    num_heads: int = Field(4, ge=1, description="attention heads; must divide hidden_dim")
    hidden_dim: int = Field(256, ge=1, description="internal width (in_dim -> hidden -> out_dim)")
    mode: Literal["global", "window"] = Field(
        "window", description="'window': queries per window of frames (SALMONN); 'global': per utterance"
    )
    num_queries: int | None = Field(
        None, ge=1, description="queries per window (window mode, default 1) or per utterance (global, 32)"
    )
    window_frames: int = Field(17, ge=1, description="encoder frames per window (17 HuBERT frames = 0.34 s)")
    window_stride: int | None = Field(
        None, ge=1, description="frames between window starts; default window_frames (no overlap)"
    )
    ffn_dim: int | None = Field(None, ge=1, description="FFN width; default 4 * hidden_dim")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout inside the Q-Former blocks")

    @model_validator(mode="after")
    def _check(self) -> "QFormerOptions":
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.window_stride is not None and self.window_stride > self.window_frames:
            raise ValueError(
                f"window_stride ({self.window_stride}) > window_frames ({self.window_frames}) "
                "would skip frames between windows"
            )
        return self


class QFormerBridge(nn.Module):
    """Learned queries + pre-LN transformer decoder blocks over (windows of) encoder frames.

    Attributes:
        in_dim, out_dim: encoder width and LLM width.
        mode, num_queries, window_frames, window_stride: see ``QFormerOptions``.
        ctc_blank_id: always None (no CTC head).
        freeze_groups: ``queries``, ``blocks``, ``projections``.
        lora_targets: the FFN and the in/out projections. The attention projections are left
            out: nn.MultiheadAttention reads its weights directly, so a LoRA wrapper on them
            would be silently bypassed.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        hidden_dim: int = 256,
        mode: Literal["global", "window"] = "window",
        num_queries: int | None = None,
        window_frames: int = 17,
        window_stride: int | None = None,
        ffn_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.mode = in_dim, out_dim, mode
        self.num_queries = num_queries or DEFAULT_QUERIES[mode]
        self.window_frames = window_frames
        self.window_stride = window_stride or window_frames
        self.frame_proj = nn.Linear(in_dim, hidden_dim)
        self.frame_norm = nn.LayerNorm(hidden_dim)  # keys/values in the blocks' pre-LN scale
        self.queries = nn.Parameter(torch.randn(self.num_queries, hidden_dim) * 0.02)
        block = nn.TransformerDecoderLayer(
            hidden_dim, num_heads, dim_feedforward=ffn_dim or 4 * hidden_dim, dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerDecoder(block, num_layers, norm=nn.LayerNorm(hidden_dim))
        self.output_proj = nn.Linear(hidden_dim, out_dim)
        self._options = dict(num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim, mode=mode,
                             num_queries=self.num_queries, window_frames=window_frames,
                             window_stride=self.window_stride, ffn_dim=ffn_dim or 4 * hidden_dim,
                             dropout=dropout)
        self.ctc_blank_id: int | None = None
        self.freeze_groups: dict[str, list[str]] = {
            "queries": ["queries"],
            "blocks": ["blocks."],
            "projections": ["frame_proj.", "frame_norm.", "output_proj."],
        }
        self.lora_targets: list[str] = ["linear1", "linear2", "frame_proj", "output_proj"]

    @classmethod
    def from_options(cls, options: QFormerOptions, ctx: BuildContext) -> "QFormerBridge":
        """Factory registered as ``qformer``."""
        return cls(ctx.require("in_dim"), ctx.require("out_dim"), **options.model_dump())

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this bridge, with defaults resolved."""
        return dict(self._options)

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid frames -> (b,) output vectors: ceil(L / stride) * q (window), q or 0 (global)."""
        lengths = frame_lengths.long()
        if self.mode == "global":
            return (lengths > 0).long() * self.num_queries
        windows = torch.div(lengths + self.window_stride - 1, self.window_stride, rounding_mode="floor")
        return windows * self.num_queries

    def _geometry(self, t: int) -> tuple[int, int, int]:
        """(frames per window, stride, windows) for a padded time axis of t frames."""
        if self.mode == "global":
            width = max(t, 1)
            return width, width, 1
        return self.window_frames, self.window_stride, max(math.ceil(t / self.window_stride), 1)

    def _windows(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut (b, t, h) frames into (b, w, k, h) windows and a (b, w, k) valid-key mask."""
        width, stride, count = self._geometry(x.shape[1])
        total = (count - 1) * stride + width
        x = F.pad(x, (0, 0, 0, total - x.shape[1]))  # (b, total, h); stride <= width so total >= t
        windows = x.unfold(1, width, stride).transpose(2, 3)  # (b, w, k, h)
        starts = torch.arange(count, device=x.device) * stride
        positions = starts[:, None] + torch.arange(width, device=x.device)  # (w, k)
        keys_valid = positions[None] < lengths[:, None, None]  # (b, w, k)
        return windows, keys_valid

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> embeds (b, w * q, out_dim), lengths (b,).

        Item i gets ceil(lengths[i] / stride) * q vectors in window mode, q in global mode
        (0 for an item without frames); the rest is zeros.
        """
        lengths = lengths.to(device=hidden.device, dtype=torch.long)
        b = hidden.shape[0]
        x = self.frame_norm(self.frame_proj(hidden))  # (b, t, h)
        windows, keys_valid = self._windows(x, lengths)  # (b, w, k, h), (b, w, k)
        window_valid = keys_valid[:, :, 0]  # (b, w): a window is used iff its first frame is valid
        out = x.new_zeros(b, window_valid.shape[1], self.num_queries, self.out_dim)  # (b, w, q, d)
        if bool(window_valid.any()):
            memory = windows[window_valid]  # (m, k, h): windows moved into the batch dimension
            queries = self.queries.to(memory.dtype).expand(memory.shape[0], -1, -1)  # (m, q, h)
            attended = self.blocks(queries, memory, memory_key_padding_mask=~keys_valid[window_valid])
            out = out.index_put((window_valid,), self.output_proj(attended))  # (b, w, q, d)
        out_lengths = window_valid.sum(1) * self.num_queries
        embeds = out.reshape(b, -1, self.out_dim)[:, : max_length(out_lengths)]  # (b, n, d)
        return BridgeOutput(embeds=embeds, lengths=out_lengths)
