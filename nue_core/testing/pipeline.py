"""Run a component where the core runs it: inside a ``SpeechLM``, next to the kit's toy parts.

``toy_speechlm`` composes the component under test with ``nue_core.testing.toys`` parts sized to
fit it; ``check_in_speechlm`` then runs a training step (loss + backward, in train mode) and
``SpeechLM.generate`` greedily and with beams, batched and one item at a time. A component that
passes the part checks but breaks the way the core calls it fails here, named.

Shape legend: b = batch, s = audio samples, l = tokens, v = vocabulary size.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from nue_core.config import ModelConfig
from nue_core.generation import GenerationConfig
from nue_core.model import SpeechLM
from nue_core.testing._common import SEED, _check_gradients, _device, _fail, _float_dtype, _running
from nue_core.testing.toys import CharTokenizer, ToyBridge, ToyDecoder, ToyEncoder

NUM_BEAMS = (1, 3)  # greedy, then beam search (which expands and reorders the cache)
TOY_DIM = 8


class _ToySpeechLM(SpeechLM):
    """A SpeechLM whose decoder may lack a tokenizer (built only to be described): generation
    then uses a CharTokenizer stand-in for its eos and pad ids. Nothing else differs."""

    stand_in: Any = None

    @property
    def tokenizer(self):  # type: ignore[no-untyped-def]
        return self.decoder.tokenizer if self.decoder.tokenizer is not None else self.stand_in


def toy_speechlm(
    encoder: nn.Module | None = None,
    bridge: nn.Module | None = None,
    decoder: nn.Module | None = None,
    *,
    ctc_classes: int = 0,
    ctc_weight: float = 0.0,
) -> SpeechLM:
    """A SpeechLM around the given parts, the missing ones filled in with toys that fit them.

    Toys go to the device and dtype of the given part. A toy decoder's vocabulary is the CTC
    head's classes less the blank (``ctc_classes - 1``) when the bridge has one, so CTC labels are
    decoder token ids as the core assumes.

    Args:
        encoder, bridge, decoder: parts to use; None: a toy.
        ctc_classes: classes of the bridge's CTC head (blank included), 0 without one.
        ctc_weight: the model config's CTC loss weight.
    """
    given = next((p for p in (encoder, bridge, decoder) if p is not None), None)
    device = _device(given) if given is not None else torch.device("cpu")
    dtype = _float_dtype(given) if given is not None else torch.float32
    toys: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)  # the same toys every run, and the caller's RNG left alone
        if decoder is None:
            width = bridge.out_dim if bridge is not None else TOY_DIM
            vocab = ctc_classes - 1 if ctc_classes else CharTokenizer().vocab_size
            decoder = ToyDecoder(width, vocab_size=vocab)
            toys.append(decoder)
        if encoder is None:
            encoder = ToyEncoder(bridge.in_dim if bridge is not None else TOY_DIM)
            toys.append(encoder)
        if bridge is None:
            bridge = ToyBridge(encoder.output_dim, decoder.embed_dim)
            toys.append(bridge)
    for toy in toys:
        toy.to(device=device, dtype=dtype)
    vocab = int(decoder.vocab_size)
    config = ModelConfig(encoder=type(encoder).__name__, bridge=type(bridge).__name__,
                         decoder=type(decoder).__name__, ctc_weight=ctc_weight)
    model = _ToySpeechLM(encoder, bridge, decoder, config, prefix_ids=[1 % vocab], postfix_ids=[3 % vocab])
    model.stand_in = CharTokenizer(vocab) if decoder.tokenizer is None else None
    return model


def check_in_speechlm(
    component: nn.Module,
    model: SpeechLM,
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    *,
    generate: bool = True,
    ctc_weight: float = 0.0,
    atol: float = 1e-5,
    ignore: Iterable[str] = (),
) -> None:
    """A training step, then greedy and beam generation, of ``model`` (which holds ``component``).

    Args:
        component: the part under test (named in failures; must get gradients from the loss).
        model: e.g. from ``toy_speechlm``.
        waveforms: (b, s) right-padded audio at the model's rate; lengths (b,) valid samples.
        generate: also generate (False for a decoder that does not cache, which cannot).
        ctc_weight: joint CTC weight for generation (> 0 needs the bridge's CTC head).
        atol: log-probability gap below which two tokens count as a tie (batched vs alone may
            then pick differently).
        ignore: parameter-name prefixes of ``component`` exempt from the gradient check.

    Raises:
        ConformanceError: naming the component and the stage ("SpeechLM training",
            "SpeechLM generate") that failed.
    """
    targets = _targets(model, len(lengths))
    with _running(model, training=True):
        _check_gradients(component, lambda: _training_loss(component, model, waveforms, lengths, targets),
                         [], require_all_grads=False, ignore=ignore, check="SpeechLM training")
    if not generate:
        return
    with _running(model, training=False):
        for beams in NUM_BEAMS:
            config = GenerationConfig(num_beams=beams, tokens_per_second=4.0, extra_tokens=4, min_new_tokens=1,
                                      repetition_limit=0, ctc_weight=ctc_weight)
            _check_generation(component, model, waveforms, lengths, config, atol)


def _targets(model: SpeechLM, batch: int) -> list[list[int]]:
    """Random transcripts (ids past the special ones, never the CTC blank) ending with eos."""
    tok = model.tokenizer
    vocab = int(model.decoder.vocab_size)
    blank = getattr(model.bridge, "ctc_blank_id", None)
    avoid = {tok.eos_id, tok.pad_id, blank}
    ids = [i for i in range(3, vocab) if i not in avoid] or [i for i in range(vocab) if i not in avoid]
    gen = torch.Generator().manual_seed(SEED)
    picks = torch.randint(0, len(ids), (batch, 5), generator=gen).tolist()
    return [[ids[j] for j in row[: 2 + i % 4]] + [tok.eos_id] for i, row in enumerate(picks)]


def _training_loss(component: nn.Module, model: SpeechLM, waveforms: torch.Tensor, lengths: torch.Tensor,
                   targets: list[list[int]]) -> torch.Tensor:
    try:
        out = model(waveforms, lengths, targets)
    except Exception as exc:  # a crash in training is this check failing
        raise _fail(component, "SpeechLM training", f"forward raised {type(exc).__name__}: {exc}") from exc
    if not (out.loss.ndim == 0 and torch.isfinite(out.loss)):
        raise _fail(component, "SpeechLM training",
                    f"the loss is {out.loss.detach().cpu().tolist()}, expected a finite scalar")
    return out.loss


def _generate(component: nn.Module, model: SpeechLM, waveforms: torch.Tensor, lengths: torch.Tensor,
              config: GenerationConfig) -> list[list[int]]:
    """``model.generate`` with the output's form checked: per item a list of token ids without eos."""
    try:
        out = model.generate(waveforms, lengths, config)
    except Exception as exc:  # e.g. a TypeError from a forward that lacks cache/use_cache
        raise _fail(component, "SpeechLM generate",
                    f"{_search(config)} raised {type(exc).__name__}: {exc}") from exc
    vocab, eos = int(model.decoder.vocab_size), model.tokenizer.eos_id
    limits = config.token_limits(lengths.float() / model.sample_rate).tolist()
    if not isinstance(out, list) or len(out) != len(lengths):
        raise _fail(component, "SpeechLM generate", f"{_search(config)} gave {out!r}, expected {len(lengths)} lists")
    for i, ids in enumerate(out):
        if not all(isinstance(t, int) and 0 <= t < vocab and t != eos for t in ids) or len(ids) > limits[i]:
            raise _fail(component, "SpeechLM generate", f"{_search(config)}: item {i} is {ids}, expected at most "
                        f"{limits[i]} token ids in [0, {vocab}) without eos {eos}")
    return out


def _check_generation(component: nn.Module, model: SpeechLM, waveforms: torch.Tensor, lengths: torch.Tensor,
                      config: GenerationConfig, atol: float) -> None:
    """Batched generation gives each item what it gets alone (its own prompt, no padding)."""
    batched = _generate(component, model, waveforms, lengths, config)
    for i, n in enumerate(lengths.tolist()):
        alone = _generate(component, model, waveforms[i : i + 1, :n], lengths[i : i + 1], config)[0]
        if alone != batched[i] and not _near_tie(model, waveforms[i : i + 1, :n], lengths[i : i + 1],
                                                  alone, batched[i], atol):
            raise _fail(component, "SpeechLM generate",
                        f"{_search(config)}: item {i} gave {batched[i]} in a batch of {len(lengths)} but {alone} "
                        "alone; an item must depend only on its own audio and tokens: check how padding is "
                        "masked, the attention mask and position ids of cached steps, and reorder_cache")


def _near_tie(model: SpeechLM, waveform: torch.Tensor, length: torch.Tensor, alone: Sequence[int],
              batched: Sequence[int], atol: float) -> bool:
    """True when, at the first token where the outputs part, the two tokens' log-probs (the item
    alone, no cache) are within ``max(10 * atol, 1e-4)``: float noise may then pick either."""
    eos = model.tokenizer.eos_id
    j = next(k for k in range(max(len(alone), len(batched)) + 1)
             if (list(alone) + [eos] * 2)[k] != (list(batched) + [eos] * 2)[k])
    a, b = (list(alone) + [eos])[j], (list(batched) + [eos])[j]
    device = waveform.device
    prefix = torch.tensor([list(alone[:j])], dtype=torch.long, device=device).reshape(1, j)
    with torch.no_grad():
        packed = model.pack_prompt(model.encode_speech(waveform, length), (prefix, torch.tensor([j], device=device)))
        logp = model.decoder(packed.embeds, packed.attention_mask, packed.position_ids).logits[0, -1].float()
    logp = logp.log_softmax(dim=-1)
    return bool((logp[a] - logp[b]).abs() <= max(10 * atol, 1e-4))


def _search(config: GenerationConfig) -> str:
    return "greedy search" if config.num_beams == 1 else f"beam search ({config.num_beams} beams)"


def toy_audio(samples: Sequence[int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random audio (b, s) of the given valid samples per item, and lengths (b,)."""
    gen = torch.Generator().manual_seed(SEED)
    lengths = torch.tensor(list(samples), dtype=torch.long)
    waves = torch.randn(len(samples), int(lengths.max()), generator=gen)
    waves = waves * (torch.arange(waves.shape[1])[None] < lengths[:, None])
    return waves.to(device=device, dtype=dtype), lengths.to(device)
