"""``check_bridge``: the conformance check of a ``Bridge``.

Shape legend: b = batch, t = frames, n = bridge vectors, d = width, v = vocabulary size.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from nue_core.protocols import BridgeOutput
from nue_core.testing._common import (
    _call,
    _check_common,
    _check_gradients,
    _check_same,
    _check_sequence,
    _device,
    _evaluating,
    _fail,
    _pad_right,
    _weighted_sum,
)


def check_bridge(
    bridge: nn.Module,
    *,
    frames: Sequence[int] = (23, 37),
    atol: float = 1e-5,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> None:
    """Check a ``Bridge``: attributes, shapes, lengths, zero padding, padding invariance, gradients.

    Gradients must reach the input frames too (the encoder trains through the bridge).

    Args:
        bridge: the module to check (left in the train/eval mode it came in).
        frames: valid frames of each batch item; items are zero-padded to the longest.
        atol, require_all_grads, ignore: as for ``check_encoder``.

    Raises:
        ConformanceError: naming the class and the failed check.
    """
    _check_common(bridge, {"in_dim": (int,), "out_dim": (int,)})
    device = _device(bridge)
    lengths = torch.tensor(list(frames), device=device)
    with _evaluating(bridge):
        items = [torch.randn(n, bridge.in_dim, device=device) for n in frames]
        hidden = _pad_right(items)  # (b, t, in_dim)
        with torch.no_grad():
            out = _run_bridge(bridge, hidden, lengths)
            for i, item in enumerate(items):
                alone = _run_bridge(bridge, item[None], lengths[i : i + 1])
                _compare_bridge_item(bridge, i, out, alone, atol)
        hidden = hidden.clone().requires_grad_(True)
        _check_gradients(bridge, lambda: _bridge_loss(bridge(hidden, lengths)),
                         [("input hidden", hidden)], require_all_grads, ignore)


def _run_bridge(bridge: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
    out = _call(bridge, "forward", hidden, lengths)
    if not isinstance(out, BridgeOutput):
        raise _fail(bridge, "forward", f"returned {type(out).__name__}, expected BridgeOutput")
    _check_sequence(bridge, "embeds", out.embeds, out.lengths, hidden.shape[0], bridge.out_dim)
    bound = torch.as_tensor(_call(bridge, "output_lengths", lengths)).to(out.lengths.device)
    if (out.lengths > bound).any():
        raise _fail(bridge, "output lengths", f"forward gave {out.lengths.tolist()}, more than "
                    f"output_lengths({lengths.tolist()}) = {bound.tolist()}")
    if out.ctc_logits is not None:
        logits, ctc_lengths = out.ctc_logits, out.ctc_lengths
        if logits.ndim != 3 or logits.shape[0] != hidden.shape[0] or ctc_lengths is None:
            raise _fail(bridge, "ctc output", "ctc_logits must be (b, t', v) and come with ctc_lengths")
        if ctc_lengths.shape != (hidden.shape[0],) or int(ctc_lengths.max()) > logits.shape[1]:
            raise _fail(bridge, "ctc output", f"ctc_lengths {ctc_lengths.tolist()} do not fit "
                        f"ctc_logits of {logits.shape[1]} frames")
    return out


def _compare_bridge_item(bridge: nn.Module, i: int, out: BridgeOutput, alone: BridgeOutput,
                         atol: float) -> None:
    if int(alone.lengths[0]) != int(out.lengths[i]):
        raise _fail(bridge, "padding invariance", f"item {i}: {int(alone.lengths[0])} vectors alone, "
                    f"{int(out.lengths[i])} in a padded batch")
    n = int(alone.lengths[0])
    _check_same(bridge, "embeds", i, out.embeds[i, :n], alone.embeds[0, :n], atol)
    if out.ctc_logits is not None and alone.ctc_logits is not None:
        m = int(alone.ctc_lengths[0])  # type: ignore[index]
        _check_same(bridge, "ctc_logits", i, out.ctc_logits[i, :m], alone.ctc_logits[0, :m], atol)


def _bridge_loss(out: BridgeOutput) -> torch.Tensor:
    loss = _weighted_sum(out.embeds)
    if out.ctc_logits is not None and out.ctc_lengths is not None:
        # only valid CTC frames: padded logits are allowed to be anything
        t = torch.arange(out.ctc_logits.shape[1], device=out.ctc_logits.device)
        valid = (t[None] < out.ctc_lengths[:, None]).unsqueeze(-1)  # (b, t', 1)
        loss = loss + _weighted_sum(out.ctc_logits * valid)
    return loss
