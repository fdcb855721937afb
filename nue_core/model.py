"""SpeechLM: encoder -> bridge -> decoder-only LM, knowing nothing about which parts it holds.

Shape legend: b = batch, s = audio samples, t = encoder frames, n = speech vectors, l = tokens,
d = LLM width, v = vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nue_core.config import ModelConfig
from nue_core.lengths import length_mask
from nue_core.prompt import PackedSequence, pack_segments, pad_ids
from nue_core.protocols import Bridge, BridgeOutput, Decoder, Encoder

if TYPE_CHECKING:  # imported lazily at run time: generation is not needed to build or train
    from nue_core.ctc_prefix import CTCPrefixScorer
    from nue_core.generation import GenerationConfig


@dataclass
class SpeechLMOutput:
    """Losses and logits of a training forward pass.

    Attributes:
        loss: lm_loss + ctc_weight * ctc_loss (scalar).
        lm_loss: mean cross-entropy over target tokens (scalar).
        ctc_loss: CTC loss on the bridge's CTC logits, or None.
        logits: (b, l, v) decoder logits over the packed sequence.
        speech: BridgeOutput (speech vectors (b, n, d) and lengths).
        packed: the packed decoder input (masks, positions, segment starts).
    """

    loss: torch.Tensor
    lm_loss: torch.Tensor
    ctc_loss: torch.Tensor | None
    logits: torch.Tensor
    speech: BridgeOutput
    packed: PackedSequence


class SpeechLM(nn.Module):
    """Speech encoder + bridge + decoder-only LM with a text prompt around the speech vectors.

    Args:
        encoder, bridge, decoder: built parts (see ``nue_core.protocols``).
        config: the resolved configuration the parts were built from.
        prefix_ids, postfix_ids: prompt token ids before and after the speech vectors.

    Attributes:
        is_trained: whether the weights as a whole were trained. False for a freshly composed
            model (even from pretrained encoder and decoder checkpoints, the bridge is random);
            ``nue_core.checkpoint`` sets it from the saved folder, and transcription warns when
            it is False. Set it to True after training the model yourself.
    """

    def __init__(
        self,
        encoder: Encoder,
        bridge: Bridge,
        decoder: Decoder,
        config: ModelConfig,
        prefix_ids: Sequence[int] = (),
        postfix_ids: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridge = bridge
        self.decoder = decoder
        self.config = config
        self.prefix_ids = list(prefix_ids)
        self.postfix_ids = list(postfix_ids)
        self.is_trained = False

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self.decoder.tokenizer

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype waveforms should have: the encoder's (bfloat16 once the model is cast to it;
        float32 under ``--dtype auto``, which may give the decoder another, see ``nue_core.dtypes``)."""
        return next(self.encoder.parameters()).dtype

    def speech_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Speech vectors the decoder gets per item: (b,) samples -> (b,) vectors, without running a part.

        A clip whose count is 0 is too short for this model (front ends refuse it before decoding).
        """
        return self.bridge.output_lengths(self.encoder.output_lengths(sample_lengths))

    def encode_speech(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        """waveforms (b, s), lengths (b,) -> speech vectors (b, n, d) with lengths (b,)."""
        enc = self.encoder(waveforms, lengths)
        # Parts may hold different dtypes (``--dtype auto``: e.g. a float32 encoder, a bfloat16 bridge).
        return self.bridge(enc.hidden.to(_dtype_of(self.bridge, enc.hidden.dtype)), enc.lengths)

    def _text_segment(self, ids: list[int], batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.tensor([ids], dtype=torch.long, device=device).expand(batch, -1)
        embeds = self.decoder.embed(tokens)  # (b, len(ids), d)
        return embeds, torch.full((batch,), len(ids), dtype=torch.long, device=device)

    def pack_prompt(
        self,
        speech: BridgeOutput,
        targets: tuple[torch.Tensor, torch.Tensor] | None = None,
        left_pad: bool = False,
    ) -> PackedSequence:
        """Lay out ``prefix + speech + postfix [+ targets]`` for each item.

        Args:
            speech: bridge output with embeds (b, n, d).
            targets: optional (ids (b, l), lengths (b,)) of target tokens (transcript + eos).
            left_pad: left-pad the batch (generation) instead of right-pad (training).
        """
        batch, device = speech.embeds.shape[0], speech.embeds.device
        prefix = self._text_segment(self.prefix_ids, batch, device)
        # The decoder's dtype (its embeddings'): the speech vectors come from a bridge that may hold another.
        segments = [prefix, (speech.embeds.to(prefix[0].dtype), speech.lengths),
                    self._text_segment(self.postfix_ids, batch, device)]
        if targets is not None:
            ids, lens = targets
            segments.append((self.decoder.embed(ids), lens))
        return pack_segments(segments, left_pad=left_pad)

    def target_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Transcripts -> token ids followed by eos (what the LM learns to generate)."""
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError("this model has no tokenizer (it was composed only to be described)")
        return [tok.encode(t) + [tok.eos_id] for t in texts]

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        targets: Sequence[Sequence[int]] | tuple[torch.Tensor, torch.Tensor],
    ) -> SpeechLMOutput:
        """Training forward pass.

        Args:
            waveforms: (b, s) float audio at ``sample_rate``; samples past ``lengths`` are padding.
            lengths: (b,) valid samples per item.
            targets: per item the target token ids ending with eos (see ``target_ids``), or an
                already padded (ids (b, l), lengths (b,)) pair.

        Returns:
            SpeechLMOutput; ``lm_loss`` is the causal-LM loss on target tokens only.
        """
        device = waveforms.device
        if isinstance(targets, tuple) and len(targets) == 2 and isinstance(targets[0], torch.Tensor):
            tgt_ids, tgt_lens = targets[0].to(device), targets[1].to(device)
        else:
            pad = self.tokenizer.pad_id if self.tokenizer is not None else 0
            tgt_ids, tgt_lens = pad_ids([list(t) for t in targets], pad, device)
        speech = self.encode_speech(waveforms, lengths)
        packed = self.pack_prompt(speech, (tgt_ids, tgt_lens))
        out = self.decoder(packed.embeds, packed.attention_mask, packed.position_ids)
        lm_loss = _target_cross_entropy(out.logits, packed, tgt_ids, tgt_lens)
        ctc_loss = self._ctc_loss(speech, tgt_ids, tgt_lens)
        loss = lm_loss if ctc_loss is None else lm_loss + self.config.ctc_weight * ctc_loss
        return SpeechLMOutput(loss, lm_loss, ctc_loss, out.logits, speech, packed)

    @torch.no_grad()
    def generate(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, config: GenerationConfig | None = None
    ) -> list[list[int]]:
        """Transcript token ids (eos removed) for each item of a batch.

        Args:
            waveforms: (b, s) float audio at ``sample_rate``, right-padded.
            lengths: (b,) valid samples per item; also sets each item's max_new_tokens.
            config: decoding settings (default: greedy with the model config's ``decode`` limits).
        """
        from nue_core.generation import GenerationConfig, beam_search, greedy

        config = config or GenerationConfig.for_model(self.config)
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer (it was composed only to be described)")
        speech = self.encode_speech(waveforms, lengths)
        packed = self.pack_prompt(speech, left_pad=True)
        limits = config.token_limits(lengths.float() / self.sample_rate)
        search = beam_search if config.num_beams > 1 or config.force_beam_search else greedy
        return search(self.decoder, packed, limits, config, self.tokenizer.eos_id, self.ctc_scorer(speech, config))

    def check_generation(self, config: GenerationConfig) -> None:
        """Raise ValueError when ``config`` asks for joint CTC scoring and the bridge has no CTC head.

        ``generate`` checks this itself; batch front ends call it before the first batch.
        """
        if config.ctc_weight > 0 and getattr(self.bridge, "ctc_blank_id", None) is None:
            raise ValueError(f"ctc_weight {config.ctc_weight}: the bridge ({type(self.bridge).__name__}) has no CTC head; "
                             "compose it with one (e.g. conv with ctc_head: true, or ctc-compress) or decode with ctc_weight 0")

    def ctc_scorer(self, speech: BridgeOutput, config: GenerationConfig) -> CTCPrefixScorer | None:
        """The joint-decoding scorer when ``config.ctc_weight`` > 0 (the bridge must have a CTC head).

        ``generate`` and the continuous-batching engine's prefill both build it here, so the two
        score alike.
        """
        if config.ctc_weight <= 0:
            return None
        self.check_generation(config)
        blank = self.bridge.ctc_blank_id  # type: ignore[attr-defined]  # present: checked above
        if speech.ctc_logits is None or speech.ctc_lengths is None:
            raise ValueError(f"ctc_weight {config.ctc_weight}: the bridge ({type(self.bridge).__name__}) has a CTC "
                             "blank id but returned no CTC logits")
        from nue_core.ctc_prefix import CTCPrefixScorer

        assert self.tokenizer is not None
        return CTCPrefixScorer(speech.ctc_logits, speech.ctc_lengths, blank, self.tokenizer.eos_id,
                               config.ctc_weight, config.ctc_candidates)

    def _ctc_loss(self, speech: BridgeOutput, tgt_ids: torch.Tensor, tgt_lens: torch.Tensor) -> torch.Tensor | None:
        if speech.ctc_logits is None or self.config.ctc_weight <= 0:
            return None
        blank = getattr(self.bridge, "ctc_blank_id", None)
        if blank is None:
            raise RuntimeError(f"{type(self.bridge).__name__} returns CTC logits but no ctc_blank_id")
        eos = self.tokenizer.eos_id if self.tokenizer is not None else None
        # The CTC targets are the transcript tokens without the trailing eos.
        lens = tgt_lens - (tgt_ids.gather(1, (tgt_lens - 1).clamp(min=0)[:, None])[:, 0] == eos).long()
        log_probs = speech.ctc_logits.float().log_softmax(dim=-1).transpose(0, 1)  # (t', b, v)
        return F.ctc_loss(
            log_probs, tgt_ids, speech.ctc_lengths, lens, blank=blank, reduction="mean", zero_infinity=True
        )


def _dtype_of(module: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter (``default`` when it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), default)


def _target_cross_entropy(
    logits: torch.Tensor, packed: PackedSequence, tgt_ids: torch.Tensor, tgt_lens: torch.Tensor
) -> torch.Tensor:
    """Mean next-token cross-entropy over the target tokens of every item.

    The token at packed position p is predicted by the logits at p - 1, so target token j of an
    item (at ``start + j``) is scored from ``logits[start + j - 1]``.
    """
    valid = length_mask(tgt_lens, tgt_ids.shape[1])  # (b, l)
    b_idx, j_idx = valid.nonzero(as_tuple=True)
    src = packed.starts[b_idx, -1] + j_idx - 1
    picked = logits[b_idx, src].float()  # (tokens, v)
    return F.cross_entropy(picked, tgt_ids[b_idx, j_idx])
