"""Decoder calls as the core makes them, and the checks of its KV cache against full forwards.

Generation (``nue_core.generation``) prefills a left-padded prompt with
``decoder(embeds, mask, positions, cache=None, use_cache=True)``, then feeds one token per row per
step with the returned cache, ``reorder_cache`` picking rows in between for beam search. Each
check here makes those calls and compares the logits with one forward over the whole sequence,
no cache, which is what a step must equal.

Shape legend: b = batch, b' = rows after reorder_cache, l = prompt tokens, k = steps, d = width,
v = vocabulary size.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from nue_core.protocols import DecoderOutput
from nue_core.testing._common import _call, _fail, _stage

GENERATION_CALL = "decoder(inputs_embeds, attention_mask, position_ids, cache=..., use_cache=True)"
TRAINING_CALL = "decoder(inputs_embeds, attention_mask, position_ids)"


def check_forward_signature(decoder: nn.Module) -> None:
    """``forward`` accepts the two call shapes of the core, without running it."""
    x = object()
    try:
        signature = inspect.signature(decoder.forward)
    except (TypeError, ValueError):  # not introspectable (a C callable): the calls below will tell
        return
    for shape, args, kwargs in ((TRAINING_CALL, (x, x, x), {}),
                                (GENERATION_CALL, (x, x, x), {"cache": None, "use_cache": True})):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise _fail(decoder, "forward signature",
                        f"forward{signature} cannot be called as the core calls it, {shape}: {exc}; declare "
                        "forward(inputs_embeds, attention_mask, position_ids, cache=None, use_cache=None) "
                        "as nue_core.protocols.Decoder does") from None


def _run_decoder(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 **call: Any) -> DecoderOutput:
    """embed(ids) then forward(..., **call); check both shapes. ids, positions (b, l), mask (b, l_cache + l)."""
    embeds = _call(decoder, "embed", ids)
    b, l = ids.shape
    if not isinstance(embeds, torch.Tensor) or tuple(embeds.shape) != (b, l, decoder.embed_dim):
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise _fail(decoder, "embed shape", f"embed(ids {(b, l)}) is {shape}, expected {(b, l, decoder.embed_dim)}")
    out = _call(decoder, "forward", embeds, mask, positions, **call)
    if not isinstance(out, DecoderOutput):
        raise _fail(decoder, "forward", f"returned {type(out).__name__}, expected DecoderOutput")
    if tuple(out.logits.shape) != (b, l, decoder.vocab_size):
        raise _fail(decoder, "output shape",
                    f"logits are {tuple(out.logits.shape)}, expected {(b, l, decoder.vocab_size)}")
    if not torch.isfinite(out.logits[:, -1]).all():
        raise _fail(decoder, "finite outputs", "logits of the last position hold NaN or inf")
    return out


def _prefill(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> Any:
    out = _run_decoder(decoder, ids, mask, positions, cache=None, use_cache=True)
    if out.cache is None:
        raise _fail(decoder, "kv cache", "forward(..., cache=None, use_cache=True) returned cache=None; generation "
                    "feeds that cache to the next step: return it (or pass check_cache=False if this decoder "
                    "does not decode incrementally; it then cannot generate)")
    return out.cache


def _step(decoder: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
          cache: Any) -> DecoderOutput:
    """One generation step: tokens, positions (b, 1); mask (b, l_cache + 1)."""
    with _stage(decoder, "kv cache", "a step with the cache, as generation makes it"):
        out = _run_decoder(decoder, tokens, mask, positions, cache=cache, use_cache=True)
    if out.cache is None:
        raise _fail(decoder, "kv cache", "a step with cache=..., use_cache=True returned cache=None; return the "
                    "cache extended by the new token")
    return out


def _full_logits(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 new: torch.Tensor) -> torch.Tensor:
    """Logits (b, l + k, v) of one forward, no cache, over the prompt followed by ``new`` (b, k)."""
    ones = torch.ones_like(new)
    after = mask.sum(dim=1, keepdim=True) + ones.cumsum(dim=1) - 1  # new tokens continue each row's count
    return _run_decoder(decoder, torch.cat([ids, new], 1), torch.cat([mask, ones], 1),
                        torch.cat([positions, after], 1)).logits


def _compare(decoder: nn.Module, check: str, what: str, got: torch.Tensor, want: torch.Tensor, atol: float,
             hint: str) -> None:
    diff = (got.float() - want.float()).abs().max().item()
    if not diff <= atol:
        raise _fail(decoder, check, f"{what} differs from a full forward without cache by {diff:.3g} "
                    f"(atol {atol:g}); {hint}")


def check_kv_cache(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                   atol: float, steps: int = 3) -> None:
    """Prefill the left-padded prompt (ids, mask, positions (b, l)), then ``steps`` steps with the
    cache: each step's logits equal those of a full forward over prompt + new tokens."""
    new = torch.randint(0, decoder.vocab_size, (ids.shape[0], steps), device=ids.device)  # (b, k)
    full = _full_logits(decoder, ids, mask, positions, new)  # (b, l + k, v)
    width, cache = ids.shape[1], _prefill(decoder, ids, mask, positions)
    next_pos = mask.sum(dim=1)  # (b,) as generation: each row's real prompt length
    for k in range(steps):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = _step(decoder, new[:, k : k + 1], mask, (next_pos + k)[:, None], cache)
        _compare(decoder, "kv cache", f"step {k + 1} with the cache", out.logits[:, -1], full[:, width + k], atol,
                 "the returned cache must hold every position seen so far, and the attention mask "
                 "(b, cached + new) covers both")
        cache = out.cache


def check_reorder_cache(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                        atol: float) -> None:
    """What beam search does to a prefilled prompt (ids, mask, positions (b, l)): expand the rows
    (repeats), step, reorder, step. Each step equals a full forward over each row's own sequence."""
    b, device = ids.shape[0], ids.device
    expand = torch.arange(b, device=device).repeat_interleave(2).flip(0)  # (b',) every row twice, reordered
    shuffle = torch.arange(2 * b, device=device).roll(1)  # (b',) the reorder after the first step
    new = torch.randint(0, decoder.vocab_size, (2 * b, 2), device=device)  # (b', 2): each row its own tokens
    rows = (ids[expand], mask[expand], positions[expand])  # the prompts of the expanded rows
    first = _full_logits(decoder, *rows, new[:, :1])[:, -1]  # (b', v)
    # after the shuffle, row r holds row shuffle[r]'s prompt and first token, then its own second token
    history = torch.cat([new[shuffle, :1], new[:, 1:]], dim=1)  # (b', 2)
    second = _full_logits(decoder, *(x[shuffle] for x in rows), history)[:, -1]  # (b', v)
    hint = "reorder_cache(cache, index) must return the cache of the rows picked by index (b',), repeats allowed"
    cache = _call(decoder, "reorder_cache", _prefill(decoder, ids, mask, positions), expand)
    step_mask = torch.cat([rows[1], torch.ones_like(rows[1][:, :1])], dim=1)  # (b', l + 1)
    next_pos = rows[1].sum(dim=1)  # (b',)
    out = _step(decoder, new[:, :1], step_mask, next_pos[:, None], cache)
    _compare(decoder, "reorder_cache", "a step after expanding the rows", out.logits[:, -1], first, atol, hint)
    cache = _call(decoder, "reorder_cache", out.cache, shuffle)
    step_mask = torch.cat([step_mask[shuffle], torch.ones_like(step_mask[:, :1])], dim=1)  # (b', l + 2)
    out = _step(decoder, new[:, 1:], step_mask, (next_pos[shuffle] + 1)[:, None], cache)
    _compare(decoder, "reorder_cache", "a step after reordering the rows", out.logits[:, -1], second, atol, hint)


def check_cache_joining(decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                        atol: float) -> None:
    """What continuous batching does (``SupportsCacheJoining``), each step equal to a full forward
    over each row's own sequence: prefill two batches of different widths, ``join_caches`` them
    (the narrower left-padded, masked 0), step; drop the widest row (``reorder_cache``), cut the
    leading positions no row uses (``trim_cache``), step again.

    ids, mask, positions (b, l): a left-padded batch; its last row is taken as a second batch of
    its own, unpadded (so the two caches differ in width).
    """
    hint = ("join_caches(caches) must hold every cache's rows in order, each left-padded to the longest; "
            "trim_cache(cache, n) must drop the first n positions")
    b, device = ids.shape[0], ids.device
    real = int(mask[-1].sum())
    alone = (ids[-1:, -real:], mask[-1:, -real:], positions[-1:, -real:])  # (1, real)
    parts = [_prefill(decoder, ids, mask, positions), _prefill(decoder, *alone)]
    cache = _call(decoder, "join_caches", parts)
    step_mask = torch.cat([mask, torch.nn.functional.pad(alone[1], (ids.shape[1] - real, 0))])  # (b + 1, l)
    rows = (torch.cat([ids, ids[-1:]]), step_mask, torch.cat([positions, positions[-1:]]))
    new = torch.randint(0, decoder.vocab_size, (b + 1, 2), device=device)
    first = _full_logits(decoder, *rows, new[:, :1])[:, -1]
    step_mask = torch.cat([step_mask, torch.ones_like(step_mask[:, :1])], dim=1)
    next_pos = rows[1].sum(dim=1)
    out = _step(decoder, new[:, :1], step_mask, next_pos[:, None], cache)
    _compare(decoder, "join_caches", "a step after joining caches of different widths", out.logits[:, -1], first,
             atol, hint)
    keep = (step_mask.sum(dim=1) < step_mask.shape[1]).nonzero()[:, 0]  # rows with padding (drop the widest)
    if len(keep) == 0:
        return
    cut = int((step_mask[keep].sum(dim=0) == 0).long().sum())  # leading positions no kept row uses
    cache = _call(decoder, "trim_cache", _call(decoder, "reorder_cache", out.cache, keep), cut)
    history = torch.cat([new[keep, :1], new[keep, 1:]], dim=1)
    second = _full_logits(decoder, *(x[keep] for x in rows), history)[:, -1]
    step_mask = torch.cat([step_mask[keep, cut:], torch.ones_like(step_mask[keep, :1])], dim=1)
    out = _step(decoder, new[keep, 1:], step_mask, (next_pos[keep] + 1)[:, None], cache)
    _compare(decoder, "trim_cache", "a step after dropping rows and trimming the cache", out.logits[:, -1], second,
             atol, hint)
