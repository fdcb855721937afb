"""The three part contracts of a speech LM: Encoder, Bridge, Decoder.

Shape legend used in every docstring here:
    b = batch, s = audio samples, t = encoder frames, n = bridge vectors (LLM prompt tokens),
    l = token sequence, d = model width, v = vocabulary size.

Sizes are plain attributes so the composer can wire parts together without a dummy forward pass.
Each protocol states every attribute, method and call shape the core uses (``nue_core.model``,
``generation``, ``inference``, ``train``); ``nue_core.testing`` checks them all, running each part
inside a ``SpeechLM`` for a training step and generation. Besides them, training with
``gradient_checkpointing`` switches on every submodule that sets ``supports_gradient_checkpointing``
(transformers models do), through ``nue_core.grad_checkpointing.enable_gradient_checkpointing``,
the one switch a part's own ``gradient_checkpointing`` option uses too.
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
    """Text <-> ids. ``decode`` skips special tokens (bos, eos, pad and any other declared special).

    What the core uses: ``encode`` (the prompt's prefix/postfix text, training transcripts),
    ``eos_id`` (appended to every target; ends generation), ``pad_id`` (pads target batches, which
    are embedded: it must be a valid id), ``decode`` (transcripts), ``vocab_size`` (the classes of a
    CTC head over decoder tokens), ``id_to_piece`` (word boundaries of word timestamps) and
    ``save``. Every id is below the decoder's ``vocab_size``.
    """

    vocab_size: int
    bos_id: int | None
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        """Encode without adding any special token."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def id_to_piece(self, id: int) -> str:
        """The piece of one id with its word marker, e.g. sentencepiece "▁six", byte-level BPE "Ġsix"
        or decoded text " six"; a piece starting with a marker starts a word (``word_timing``)."""
        ...

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the tokenizer files into ``folder``; return decoder options that reload them."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """Waveform -> frame features.

    Attributes:
        output_dim: d of ``EncoderOutput.hidden`` (the composer builds the bridge with it).
        frame_rate_hz: frames per second of audio (HuBERT: 50); bridges that think in seconds get it.
        sample_rate: audio sample rate the encoder expects (Hz): audio is loaded and resampled to
            it, and generation's token limits count seconds with it.
        freeze_groups: named lists of parameter-name prefixes that a config may freeze by name,
            e.g. ``{"feature_extractor": ["model.feature_extractor."]}``.

    It has at least one parameter: the transcriber feeds waveforms in the dtype of the first. The
    transcriber admits a clip when ``output_lengths`` (then the bridge's) gives it a vector, so any
    clip that ``output_lengths`` gives a frame must encode. Training runs it in train mode,
    generation in eval mode; a padded item's valid frames equal those of the item alone (within
    float tolerance).
    """

    output_dim: int
    frame_rate_hz: float
    sample_rate: int
    freeze_groups: dict[str, list[str]]

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """waveforms (b, s) float, right-padded; lengths (b,) valid samples -> EncoderOutput with
        hidden (b, t, output_dim) zero past its lengths, which equal ``output_lengths(lengths)``."""
        ...

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid samples -> (b,) valid frames, without running the model (the transcriber
        passes CPU tensors whatever the model's device)."""
        ...

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this encoder's architecture without its original checkpoint."""
        ...


@runtime_checkable
class Bridge(Protocol):
    """Encoder frames -> LLM prompt vectors. Built with ``in_dim``/``out_dim`` from the composer.

    Attributes:
        in_dim, out_dim: widths of the input frames (the encoder's ``output_dim``) and of the
            output vectors (the decoder's ``embed_dim``).
        freeze_groups: as for Encoder.

    Optional attributes (the core reads them with a default):
        ctc_blank_id (default None): the blank class of a CTC head. A bridge that returns
            ``ctc_logits`` must set it. The head labels decoder token ids: built with the
            composer's ``ctc_vocab_size`` V, it has V + 1 classes (the convention: blank = V).
            Training adds ``ctc_weight * CTC`` on the transcript ids; decoding with
            ``ctc_weight > 0`` scores decoder tokens with it.
        length_depends_on_content (default False): True when the number of output vectors
            depends on what is said (CTC compression), so ``output_lengths`` is a bound.

    Gradients reach ``hidden`` (the encoder trains through the bridge); a padded item's valid
    vectors equal those of the item alone.
    """

    in_dim: int
    out_dim: int
    freeze_groups: dict[str, list[str]]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """hidden (b, t, in_dim), lengths (b,) -> BridgeOutput with embeds (b, n, out_dim) zero
        past its lengths, and optionally ctc_logits (b, t', V + 1) with ctc_lengths (b,)."""
        ...

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid input frames -> (b,) upper bound on valid output vectors, without running it.

        The transcriber rejects a clip whose bound is 0; any input with a bound of 1 or more must run.
        """
        ...

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this bridge (its widths come from the composer again)."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """Decoder-only LM that takes ``inputs_embeds``, with a KV cache for generation.

    Attributes:
        embed_dim: width of the token embeddings (what the bridge must output).
        vocab_size: size of the output distribution; every tokenizer id is below it.
        tokenizer: a Tokenizer, or None when built only to be described (no files at hand).
        lora_targets: default module names for LoRA on this architecture.
        freeze_groups: as for Encoder.

    The core calls it in two shapes, always with these argument names:

    - training: ``decoder(inputs_embeds, attention_mask, position_ids)`` in train mode, over a
      right-padded ``prefix + speech + postfix + target`` batch; the cache may be left out.
    - generation (``nue_core.generation``), in eval mode under ``no_grad``: first
      ``decoder(prompt, mask, positions, cache=None, use_cache=True)`` over the left-padded
      prompts, then one token per row per step, ``decoder(embed(tokens (b, 1)), mask (b, c + 1),
      positions (b, 1), cache=<the cache it returned last>, use_cache=True)``. Beam search calls
      ``reorder_cache`` between steps. Each step's logits must equal those of one forward over the
      whole sequence (within float tolerance), and a row's logits must depend only on its own
      tokens and mask: batched generation equals generating each item alone.

    Optional methods (``SupportsCacheJoining``; only the continuous-batching engine,
    ``nue_core.inference.engine``, needs them, and says so when they are missing):
    ``join_caches`` and ``trim_cache``.

    Optional argument: a forward that takes ``logits_to_keep: int = 0`` gets ``logits_to_keep=1``
    for the prompt's prefill and returns (b, 1, vocab_size) logits of the last position only (the
    only ones sampled: the others would cost prompt length x vocabulary for nothing). The core
    looks at the forward's signature and leaves it out for a decoder that does not declare it.
    """

    embed_dim: int
    vocab_size: int
    tokenizer: Tokenizer | None
    lora_targets: list[str]
    freeze_groups: dict[str, list[str]]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b, l) int64 -> (b, l, embed_dim) token embeddings (prompt text, targets, generated tokens)."""
        ...

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        use_cache: bool | None = None,
    ) -> DecoderOutput:
        """Next-token logits of the new positions.

        Args:
            inputs_embeds: (b, l, embed_dim) new positions; padding (left in generation, right in
                training) has attention_mask 0 and may hold anything.
            attention_mask: (b, c + l) 1 for real tokens, 0 for padding; covers the c cached
                positions and the l new ones.
            position_ids: (b, l) positions of the new tokens, counting real tokens only.
            cache: None, or exactly the cache the previous call returned (after ``reorder_cache``);
                opaque to the core, which never copies, inspects or reuses an older one (so it may
                be updated in place).
            use_cache: True: return the cache extended by the new positions (generation always
                passes True). None or False: the cache may be None (training passes neither).

        Returns:
            DecoderOutput with logits (b, l, vocab_size) and the cache.
        """
        ...

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """The cache of the batch rows picked by ``index`` (b',) int64; b' may differ from b and rows
        may repeat (beam search expands b items to b * k rows, then reorders them each step). May
        work in place; the core uses only the returned cache."""
        ...

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this decoder's architecture; writes the tokenizer's files into
        ``folder`` (``Tokenizer.save``) so that the options reload them."""
        ...


@runtime_checkable
class SupportsCacheJoining(Protocol):
    """The optional cache methods of a ``Decoder`` that continuous batching uses
    (``nue_core.inference.engine``): rows join and leave a running batch between steps.

    The engine keeps the attention mask (b, c) itself: a joined row's padding positions get mask 0
    and its position ids stay its own, so each row's logits are those of the row alone. Both
    methods may work in place; the engine uses only the returned cache. ``nue_core.testing``
    checks them (``check_cache_joining``) when a decoder has them.
    """

    def join_caches(self, caches: list[Any]) -> Any:
        """One cache holding the rows of ``caches`` (each as returned by the decoder, b_i rows and
        c_i positions) in order: b = sum b_i rows, c = max c_i positions, each cache's positions
        left-padded with anything finite (zeros) to c."""
        ...

    def trim_cache(self, cache: Any, count: int) -> Any:
        """The cache without its first ``count`` positions (every row has them masked 0)."""
        ...
