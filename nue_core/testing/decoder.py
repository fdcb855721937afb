"""``check_decoder``: the conformance check of a ``Decoder`` and its tokenizer.

Shape legend: b = batch, l = tokens, d = width, v = vocabulary size.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from nue_core.protocols import DecoderOutput, Tokenizer
from nue_core.testing._common import (
    _call,
    _check_common,
    _check_gradients,
    _check_same,
    _device,
    _evaluating,
    _fail,
    _is_str_list,
    _weighted_sum,
)

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
    """Check a ``Decoder``: attributes, embed/logit shapes, left-padding invariance, KV cache,
    gradients (to the parameters and to ``inputs_embeds``, which the bridge trains through) and the
    tokenizer's round trip of ``"hello world"``.

    Args:
        decoder: the module to check (left in the train/eval mode it came in).
        seq_lengths: token counts of the batch items; items are left-padded as in generation.
        atol: as for ``check_encoder``.
        check_cache: one step with the returned cache must give the logits of a full forward.
        require_all_grads, ignore: as for ``check_encoder``.

    Raises:
        ConformanceError: naming the class and the failed check.
    """
    _check_common(decoder, {"embed_dim": (int,), "vocab_size": (int,)})
    if not _is_str_list(getattr(decoder, "lora_targets", None)):
        raise _fail(decoder, "protocol attributes", "'lora_targets' must be a list of str")
    if not hasattr(decoder, "tokenizer"):
        raise _fail(decoder, "protocol attributes", "missing attribute 'tokenizer' (None is allowed)")
    device = _device(decoder)
    with _evaluating(decoder):
        items = [torch.randint(0, decoder.vocab_size, (n,), device=device) for n in seq_lengths]
        ids, mask, positions = _left_pad(items, _pad_id(decoder))  # each (b, l)
        with torch.no_grad():
            logits = _run_decoder(decoder, ids, mask, positions).logits
            for i, item in enumerate(items):
                alone = _run_decoder(decoder, item[None], torch.ones_like(item[None]),
                                     torch.arange(len(item), device=device)[None]).logits
                _check_same(decoder, "logits", i, logits[i, -len(item) :], alone[0], atol)
            if check_cache:
                _check_cache(decoder, ids, mask, positions, logits, atol)
        _check_decoder_gradients(decoder, ids, mask, positions, require_all_grads, ignore)
    _check_tokenizer(decoder)


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


def _run_decoder(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                 positions: torch.Tensor, cache: Any = None) -> DecoderOutput:
    """embed(ids) then forward; check the shapes of both. ids, mask (b, l_cache + l), positions (b, l)."""
    embeds = _call(decoder, "embed", ids)
    b, l = ids.shape
    if not isinstance(embeds, torch.Tensor) or tuple(embeds.shape) != (b, l, decoder.embed_dim):
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise _fail(decoder, "embed shape", f"embed(ids {(b, l)}) is {shape}, expected {(b, l, decoder.embed_dim)}")
    out = _call(decoder, "forward", embeds, mask, positions, cache)
    if not isinstance(out, DecoderOutput):
        raise _fail(decoder, "forward", f"returned {type(out).__name__}, expected DecoderOutput")
    if tuple(out.logits.shape) != (b, l, decoder.vocab_size):
        raise _fail(decoder, "output shape",
                    f"logits are {tuple(out.logits.shape)}, expected {(b, l, decoder.vocab_size)}")
    if not torch.isfinite(out.logits[:, -1]).all():
        raise _fail(decoder, "finite outputs", "logits of the last position hold NaN or inf")
    return out


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


def _check_cache(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 full: torch.Tensor, atol: float) -> None:
    """All but the last token, then the last one with the cache: same logits as the full pass."""
    first = _run_decoder(decoder, ids[:, :-1], mask[:, :-1], positions[:, :-1])
    if first.cache is None:
        raise _fail(decoder, "kv cache", "forward returned cache=None; return the updated cache, or "
                    "pass check_cache=False if this decoder does not decode incrementally")
    step = _run_decoder(decoder, ids[:, -1:], mask, positions[:, -1:], first.cache).logits
    diff = (step[:, -1].float() - full[:, -1].float()).abs().max().item()
    if not diff <= atol:
        raise _fail(decoder, "kv cache", f"a step with the cache differs from a full forward by "
                    f"{diff:.3g} (atol {atol:g})")


def _check_tokenizer(decoder: nn.Module) -> None:
    tokenizer = decoder.tokenizer
    if tokenizer is None:
        return
    if not isinstance(tokenizer, Tokenizer):
        raise _fail(decoder, "tokenizer", f"{type(tokenizer).__name__} lacks part of "
                    "nue_core.protocols.Tokenizer (vocab_size, bos_id, eos_id, pad_id, encode, decode, save)")
    ids = _call(tokenizer, "encode", ROUND_TRIP_TEXT)
    if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < decoder.vocab_size for i in ids):
        raise _fail(decoder, "tokenizer", f"encode({ROUND_TRIP_TEXT!r}) = {ids!r}, "
                    f"expected a list of ints in [0, {decoder.vocab_size})")
    text = _call(tokenizer, "decode", ids)
    if not isinstance(text, str) or text.strip() != ROUND_TRIP_TEXT:
        raise _fail(decoder, "tokenizer round trip", f"decode(encode({ROUND_TRIP_TEXT!r})) = {text!r}")
