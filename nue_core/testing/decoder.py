"""``check_decoder``: the conformance check of a ``Decoder`` and its tokenizer.

Shape legend: b = batch, l = tokens, s = audio samples, d = width, v = vocabulary size.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from nue_core.protocols import Tokenizer
from nue_core.testing._common import (
    _call,
    _check_common,
    _check_gradients,
    _check_same,
    _device,
    _evaluating,
    _fail,
    _float_dtype,
    _is_str_list,
    _weighted_sum,
)
from nue_core.testing.kv_cache import (
    _run_decoder,
    check_cache_joining,
    check_forward_signature,
    check_kv_cache,
    check_reorder_cache,
)
from nue_core.testing.pipeline import check_in_speechlm, toy_audio, toy_speechlm
from nue_core.testing.toys import HOP

ROUND_TRIP_TEXT = "hello world"


def check_decoder(
    decoder: nn.Module,
    *,
    seq_lengths: Sequence[int] = (5, 8),
    atol: float = 1e-5,
    check_cache: bool = True,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> None:
    """Check a ``Decoder`` against everything the core does with one.

    In order: attributes; the tokenizer (ids in range, round trip of ``"hello world"``); that
    ``forward`` takes the core's two call shapes; embed/logit shapes; left-padding invariance; the
    KV cache (prefill then steps, and ``reorder_cache`` expanding and reordering rows, each equal
    to a full forward; ``join_caches``/``trim_cache`` when present); gradients (to the parameters and to ``inputs_embeds``, which the bridge
    trains through); then, inside a ``SpeechLM`` with the kit's toy encoder and bridge, a training
    step and ``SpeechLM.generate`` greedily and with beams, batched equal to one item at a time.

    Args:
        decoder: the module to check (left in the train/eval mode it came in).
        seq_lengths: token counts of the batch items (left-padded as in generation); also the
            speech vectors of each item in the SpeechLM.
        atol: as for ``check_encoder``; also the tolerance of cached vs full logits.
        check_cache: False for a decoder that does not decode incrementally: the cache checks and
            generation are skipped (SpeechLM.generate needs the cache, so it cannot generate).
        require_all_grads, ignore: as for ``check_encoder``.

    Raises:
        ConformanceError: naming the class and the failed check.
    """
    _check_common(decoder, {"embed_dim": (int,), "vocab_size": (int,)})
    if not _is_str_list(getattr(decoder, "lora_targets", None)):
        raise _fail(decoder, "protocol attributes", "'lora_targets' must be a list of str")
    if not hasattr(decoder, "tokenizer"):
        raise _fail(decoder, "protocol attributes", "missing attribute 'tokenizer' (None is allowed)")
    _check_tokenizer(decoder)
    check_forward_signature(decoder)
    device = _device(decoder)
    with _evaluating(decoder):
        items = [torch.randint(0, decoder.vocab_size, (n,), device=device) for n in seq_lengths]
        ids, mask, positions = _left_pad(items, _pad_id(decoder))  # each (b, l)
        with torch.no_grad():
            logits = _run_decoder(decoder, ids, mask, positions).logits  # the training call shape
            for i, item in enumerate(items):
                alone = _run_decoder(decoder, item[None], torch.ones_like(item[None]),
                                     torch.arange(len(item), device=device)[None]).logits
                _check_same(decoder, "logits", i, logits[i, -len(item) :], alone[0], atol)
            if check_cache:
                check_kv_cache(decoder, ids, mask, positions, atol)
                check_reorder_cache(decoder, ids, mask, positions, atol)
                if callable(getattr(decoder, "join_caches", None)):  # optional: continuous batching
                    check_cache_joining(decoder, ids, mask, positions, atol)
        _check_decoder_gradients(decoder, ids, mask, positions, require_all_grads, ignore)
    model = toy_speechlm(decoder=decoder)
    waves, lengths = toy_audio([2 * n * HOP for n in seq_lengths], device, _float_dtype(decoder))  # n vectors each
    check_in_speechlm(decoder, model, waves, lengths, generate=check_cache, atol=atol, ignore=ignore)


def _pad_id(decoder: nn.Module) -> int:
    tokenizer = getattr(decoder, "tokenizer", None)
    return int(getattr(tokenizer, "pad_id", 0) or 0)


def _left_pad(items: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, ...]:
    """ids (b, l) left-padded with ``pad_id``, attention mask (b, l), position ids (b, l)."""
    width = max(len(x) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long, device=items[0].device)
    mask = torch.zeros_like(ids)
    for i, item in enumerate(items):
        ids[i, width - len(item) :] = item
        mask[i, width - len(item) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # valid tokens count from 0 whatever the padding
    return ids, mask, positions


def _check_decoder_gradients(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                             positions: torch.Tensor, require_all_grads: bool, ignore: Iterable[str]) -> None:
    """Gradients from the logits of valid positions reach the parameters and ``inputs_embeds``."""
    embeds: list[torch.Tensor] = []

    def loss() -> torch.Tensor:
        embeds.append(decoder.embed(ids))  # through embed, so the embedding table is checked too
        embeds[-1].retain_grad()  # a non-leaf: keep its grad to check it
        logits = decoder(embeds[-1], mask, positions).logits
        return _weighted_sum(torch.where(mask[..., None].bool(), logits, 0.0))  # padded rows may be NaN

    _check_gradients(decoder, loss, [], require_all_grads, ignore)
    if embeds[-1].grad is None:
        raise _fail(decoder, "gradient flow", "no gradient reaches inputs_embeds")


def _check_tokenizer(decoder: nn.Module) -> None:
    """The protocol's attributes, special ids the core uses within the vocabulary, a round trip."""
    tokenizer = decoder.tokenizer
    if tokenizer is None:
        return
    if not isinstance(tokenizer, Tokenizer):
        raise _fail(decoder, "tokenizer", f"{type(tokenizer).__name__} lacks part of "
                    "nue_core.protocols.Tokenizer (vocab_size, bos_id, eos_id, pad_id, encode, decode, id_to_piece, save)")
    # eos ends generation and every target; pad fills target batches, which are embedded
    for name in ("eos_id", "pad_id"):
        value = getattr(tokenizer, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < decoder.vocab_size:
            raise _fail(decoder, "tokenizer", f"{name} is {value!r}, expected an int in [0, {decoder.vocab_size})")
    if not isinstance(tokenizer.vocab_size, int) or tokenizer.vocab_size > decoder.vocab_size:
        raise _fail(decoder, "tokenizer", f"tokenizer vocab_size {tokenizer.vocab_size!r} exceeds the decoder's "
                    f"{decoder.vocab_size}: its ids would index past the logits")
    ids = _call(tokenizer, "encode", ROUND_TRIP_TEXT)
    if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < decoder.vocab_size for i in ids):
        raise _fail(decoder, "tokenizer", f"encode({ROUND_TRIP_TEXT!r}) = {ids!r}, "
                    f"expected a list of ints in [0, {decoder.vocab_size})")
    text = _call(tokenizer, "decode", ids)
    if not isinstance(text, str) or text.strip() != ROUND_TRIP_TEXT:
        raise _fail(decoder, "tokenizer round trip", f"decode(encode({ROUND_TRIP_TEXT!r})) = {text!r}")
