"""The three part contracts of a speech LM: Encoder, Bridge, Decoder.

Shape legend used in every docstring here:
    b = batch, s = audio samples, t = encoder frames, n = bridge vectors (LLM prompt tokens),
    l = token sequence, d = model width, v = vocabulary size.

Sizes are plain attributes so the composer can wire parts together without a dummy forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class EncoderOutput:
    """What an encoder returns.

    Attributes:
        hidden: (b, t, d) frame features; frames at or past ``lengths[i]`` are padding.
        lengths: (b,) number of valid frames per item (int64).
        all_layers: optional tuple of (b, t, d) hidden states of every layer, first = input of layer 1.
    """

    hidden: torch.Tensor
    lengths: torch.Tensor
    all_layers: tuple[torch.Tensor, ...] | None = None


@dataclass
class BridgeOutput:
    """What a bridge returns.

    Attributes:
        embeds: (b, n, out_dim) vectors handed to the LLM as the speech part of the prompt.
        lengths: (b,) number of valid vectors per item.
        ctc_logits: optional (b, t', v) CTC logits over frames before any compression.
        ctc_lengths: optional (b,) valid frames of ``ctc_logits``.
    """

    embeds: torch.Tensor
    lengths: torch.Tensor
    ctc_logits: torch.Tensor | None = None
    ctc_lengths: torch.Tensor | None = None


@dataclass
class DecoderOutput:
    """What a decoder returns: logits (b, l, v) and the updated KV cache (opaque to the core)."""

    logits: torch.Tensor
    cache: Any = None


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> ids. ``decode`` skips special tokens (bos, eos, pad and any other declared special)."""

    vocab_size: int
    bos_id: int | None
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Encode without adding any special token."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the tokenizer files into ``folder``; return decoder options that reload them."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """Waveform -> frame features.

    Attributes:
        output_dim: d of ``EncoderOutput.hidden``.
        frame_rate_hz: frames per second of audio (HuBERT: 50).
        sample_rate: audio sample rate the encoder expects (Hz).
        freeze_groups: named lists of parameter-name prefixes that a config may freeze by name,
            e.g. ``{"feature_extractor": ["model.feature_extractor."]}``.
    """

    output_dim: int
    frame_rate_hz: float
    sample_rate: int
    freeze_groups: dict[str, list[str]]

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """waveforms (b, s) float, lengths (b,) valid samples -> EncoderOutput."""
        ...

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid samples -> (b,) valid frames, without running the model."""
        ...

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this encoder's architecture without its original checkpoint."""
        ...


@runtime_checkable
class Bridge(Protocol):
    """Encoder frames -> LLM prompt vectors. Built with ``in_dim``/``out_dim`` from the composer.

    Attributes:
        in_dim, out_dim: widths of the input frames and of the output vectors.
        freeze_groups: as for Encoder.
        ctc_blank_id: blank class of the CTC head, None when the bridge has none.

    Optional attribute ``length_depends_on_content`` (default False): True when the number of
    output vectors depends on what is said (CTC compression), so ``output_lengths`` is a bound.
    """

    in_dim: int
    out_dim: int
    freeze_groups: dict[str, list[str]]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> BridgeOutput with embeds (b, n, out_dim)."""
        ...

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid input frames -> (b,) upper bound on valid output vectors."""
        ...

    def export_options(self, folder: Path) -> dict[str, Any]: ...


@runtime_checkable
class Decoder(Protocol):
    """Decoder-only LM that takes ``inputs_embeds``.

    Attributes:
        embed_dim: width of the token embeddings (what the bridge must output).
        vocab_size: size of the output distribution.
        tokenizer: a Tokenizer, or None when built only to be described (no files at hand).
        lora_targets: default module names for LoRA on this architecture.
        freeze_groups: as for Encoder.
    """

    embed_dim: int
    vocab_size: int
    tokenizer: Tokenizer | None
    lora_targets: list[str]
    freeze_groups: dict[str, list[str]]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b, l) -> (b, l, embed_dim)."""
        ...

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
    ) -> DecoderOutput:
        """inputs_embeds (b, l, d), attention_mask (b, l_cache + l), position_ids (b, l) -> logits (b, l, v)."""
        ...

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """The cache with its batch rows picked by ``index`` (b',) (beam search expands and reorders)."""
        ...

    def export_options(self, folder: Path) -> dict[str, Any]: ...
