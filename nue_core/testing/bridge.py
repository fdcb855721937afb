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
    _check_shortest,
    _device,
    _evaluating,
    _fail,
    _float_dtype,
    _pad_right,
    _weighted_sum,
)
from nue_core.testing.pipeline import check_in_speechlm, toy_audio, toy_speechlm
from nue_core.testing.toys import HOP

PROBE_FRAMES = 4096  # the shortest input that gets a vector is searched for up to this many frames
CTC_LOSS_WEIGHT, CTC_DECODE_WEIGHT = 0.5, 0.3  # a CTC head is trained and decoded with, as the core may


def check_bridge(
    bridge: nn.Module,
    *,
    frames: Sequence[int] = (23, 37),
    atol: float = 1e-5,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> None:
    """Check a ``Bridge`` against everything the core does with one.

    In order: attributes; shapes, lengths (within ``output_lengths``), zero padding and padding
    invariance of a padded batch, and a CTC head's output and ``ctc_blank_id``; that the
    shortest input ``output_lengths`` gives a vector for (the transcriber admits it) runs;
    gradients, which must reach the input frames too (the encoder trains through the bridge);
    then, inside a ``SpeechLM`` with the kit's toy encoder and decoder, a training step (with
    the CTC loss when there is a head) and ``SpeechLM.generate`` greedily and with beams (joint
    CTC decoding when there is a head), batched equal to one item at a time.

    Args:
        bridge: the module to check (left in the train/eval mode it came in).
        frames: valid frames of each batch item; items are zero-padded to the longest.
        atol, require_all_grads, ignore: as for ``check_encoder``.

    Raises:
        ConformanceError: naming the class and the failed check.
    """
    _check_common(bridge, {"in_dim": (int,), "out_dim": (int,)})
    device, dtype = _device(bridge), _float_dtype(bridge)  # frames come in the model's dtype
    lengths = torch.tensor(list(frames), device=device)
    with _evaluating(bridge):
        items = [torch.randn(n, bridge.in_dim, device=device, dtype=dtype) for n in frames]
        hidden = _pad_right(items)  # (b, t, in_dim)
        with torch.no_grad():
            out = _run_bridge(bridge, hidden, lengths)
            for i, item in enumerate(items):
                alone = _run_bridge(bridge, item[None], lengths[i : i + 1])
                _compare_bridge_item(bridge, i, out, alone, atol)
            classes = _check_ctc_head(bridge, out)
            _check_shortest_input(bridge, max(frames))
        hidden = hidden.clone().requires_grad_(True)
        _check_gradients(bridge, lambda: _bridge_loss(bridge(hidden, lengths)),
                         [("input hidden", hidden)], require_all_grads, ignore)
    # the kit's toy encoder gives one frame per HOP samples: each item gets its number of frames
    waves, lengths = toy_audio([n * HOP for n in frames], device, dtype)
    ctc = classes > 0
    model = toy_speechlm(bridge=bridge, ctc_classes=classes, ctc_weight=CTC_LOSS_WEIGHT if ctc else 0.0)
    check_in_speechlm(bridge, model, waves, lengths, ctc_weight=CTC_DECODE_WEIGHT if ctc else 0.0,
                      atol=atol, ignore=ignore)


def _check_ctc_head(bridge: nn.Module, out: BridgeOutput) -> int:
    """Classes of the CTC head (blank included), 0 without one; a head needs its ``ctc_blank_id``.

    The core trains CTC on decoder token ids and scores decoder tokens with it, so classes are the
    decoder vocabulary plus the blank.
    """
    if out.ctc_logits is None:
        return 0
    blank = getattr(bridge, "ctc_blank_id", None)
    classes = int(out.ctc_logits.shape[-1])
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < classes:
        raise _fail(bridge, "ctc output", f"ctc_logits have {classes} classes but ctc_blank_id is {blank!r}; "
                    "set ctc_blank_id to the blank class (the composer's ctc_vocab_size V, with V + 1 classes)")
    return classes


def _check_shortest_input(bridge: nn.Module, longer: int) -> None:
    """The shortest input with a vector runs alone and beside a ``longer``-frame one."""
    device, dtype = _device(bridge), _float_dtype(bridge)
    _check_shortest(
        bridge, "shortest input", PROBE_FRAMES, longer,
        describe=lambda n: f"an input of {n} frame(s), the shortest that output_lengths gives a vector",
        make_item=lambda n: torch.randn(n, bridge.in_dim, device=device, dtype=dtype),  # (t, d)
        run=lambda hidden, lengths: _run_bridge(bridge, hidden, lengths),
    )
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
