"""``check_encoder``: the conformance check of an ``Encoder``.

Shape legend: b = batch, s = audio samples, t = frames, d = width.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from nue_core.protocols import EncoderOutput
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

PROBE_SECONDS = 4  # the shortest clip that gets a frame is searched for up to this long


def check_encoder(
    encoder: nn.Module,
    *,
    batch_seconds: Sequence[float] = (0.5, 0.8),
    atol: float = 1e-5,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> None:
    """Check an ``Encoder`` against everything the core does with one.

    In order: attributes; shapes, lengths (equal to ``output_lengths``), zero padding and padding
    invariance of a padded batch; that the shortest clip ``output_lengths`` gives a frame for
    (the transcriber admits it) encodes; gradients; then, inside a ``SpeechLM`` with the kit's toy
    bridge and decoder, a training step and ``SpeechLM.generate`` greedily and with beams,
    batched equal to one item at a time.

    Args:
        encoder: the module to check (left in the train/eval mode it came in).
        batch_seconds: durations of the batch items; items are zero-padded to the longest.
        atol: largest difference allowed between an item alone and in the padded batch.
        require_all_grads: every trainable parameter must get a gradient from the outputs.
        ignore: parameter-name prefixes exempt from ``require_all_grads``.

    Raises:
        ConformanceError: naming the class and the failed check.
    """
    _check_common(encoder, {"output_dim": (int,), "frame_rate_hz": (float, int), "sample_rate": (int,)})
    if next(encoder.parameters(), None) is None:
        raise _fail(encoder, "protocol attributes", "has no parameter; the transcriber feeds waveforms in the "
                    "dtype of the encoder's first parameter")
    device, dtype = _device(encoder), _float_dtype(encoder)  # as the transcriber: audio in the encoder's dtype
    sizes = [max(1, round(s * encoder.sample_rate)) for s in batch_seconds]
    lengths = torch.tensor(sizes, device=device)
    with _evaluating(encoder):
        items = [torch.randn(n, device=device, dtype=dtype) for n in sizes]
        waves = _pad_right(items)  # (b, s)
        with torch.no_grad():
            out = _run_encoder(encoder, waves, lengths)
            for i, item in enumerate(items):
                alone = _run_encoder(encoder, item[None], lengths[i : i + 1])
                n = int(alone.lengths[0])
                _check_same(encoder, "hidden", i, out.hidden[i, :n], alone.hidden[0, :n], atol)
            _check_shortest_clip(encoder, max(sizes))
        _check_gradients(encoder, lambda: _weighted_sum(encoder(waves, lengths).hidden), (),
                         require_all_grads, ignore)
    waves, lengths = toy_audio(sizes, device, dtype)
    check_in_speechlm(encoder, toy_speechlm(encoder=encoder), waves, lengths, atol=atol, ignore=ignore)


def _check_shortest_clip(encoder: nn.Module, longer: int) -> None:
    """The shortest clip with a frame encodes alone and beside a ``longer``-sample one."""
    device, dtype = _device(encoder), _float_dtype(encoder)
    _check_shortest(
        encoder, "shortest clip", PROBE_SECONDS * encoder.sample_rate, longer,
        describe=lambda n: f"a clip of {n} samples, the shortest that output_lengths gives a frame",
        make_item=lambda n: torch.randn(n, device=device, dtype=dtype),  # (s,)
        run=lambda waves, lengths: _run_encoder(encoder, waves, lengths),
    )


def _run_encoder(encoder: nn.Module, waves: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
    """Forward (b, s) waveforms and check the output against the protocol and output_lengths."""
    out = _call(encoder, "forward", waves, lengths)
    if not isinstance(out, EncoderOutput):
        raise _fail(encoder, "forward", f"returned {type(out).__name__}, expected EncoderOutput")
    _check_sequence(encoder, "hidden", out.hidden, out.lengths, waves.shape[0], encoder.output_dim)
    expected = _call(encoder, "output_lengths", lengths)
    if not torch.equal(out.lengths.cpu().long(), torch.as_tensor(expected).cpu().long()):
        raise _fail(encoder, "output lengths", f"forward gave {out.lengths.tolist()} but "
                    f"output_lengths({lengths.tolist()}) gives {torch.as_tensor(expected).tolist()}")
    for k, layer in enumerate(out.all_layers or ()):
        if layer.ndim != 3 or layer.shape[:2] != out.hidden.shape[:2]:
            raise _fail(encoder, "output shape", f"all_layers[{k}] is {tuple(layer.shape)}, "
                        f"expected (b, t, d) with (b, t) = {tuple(out.hidden.shape[:2])}")
    return out
