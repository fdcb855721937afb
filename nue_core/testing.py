"""Conformance checks a plugin runs over the components it registers.

A plugin's own test suite needs one call, with tiny options for each component it registers::

    from nue_core.testing import check_plugin

    def test_conformance():
        check_plugin("my_plugin", {"bridge:my-bridge": {"width": 8}})

Each check raises ``ConformanceError`` (an ``AssertionError``, so pytest shows it as a failure)
whose message names the component class, the check that failed and what to do about it.

Shape legend: b = batch, s = audio samples, t = frames, n = bridge vectors, l = tokens,
d = width, v = vocabulary size.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from nue_core.errors import NueError
from nue_core.plugins import PluginSet, get_plugins
from nue_core.protocols import BridgeOutput, DecoderOutput, EncoderOutput, Tokenizer
from nue_core.registry import KINDS, BuildContext, Kind

__all__ = [
    "ConformanceError",
    "Example",
    "check_bridge",
    "check_component",
    "check_decoder",
    "check_encoder",
    "check_plugin",
    "default_context",
]

SEED = 0
ROUND_TRIP_TEXT = "hello world"


class ConformanceError(AssertionError):
    """A component breaks its protocol; the message names the class and the failed check."""


@dataclass
class Example:
    """One component's entry in ``check_plugin``: tiny options plus how to check it.

    A plain options dict in ``check_plugin``'s examples means ``Example(options=that_dict)``.
    """

    options: dict[str, Any] = field(default_factory=dict)
    ctx: BuildContext | None = None
    atol: float = 1e-5
    require_all_grads: bool = True
    ignore: tuple[str, ...] = ()


def default_context(kind: Kind) -> BuildContext:
    """The BuildContext ``check_component`` uses by default: small sizes for a bridge.

    Weights come from the example's options: give ``config:`` (random init) rather than a checkpoint.
    """
    if kind == "bridge":
        return BuildContext(in_dim=16, out_dim=24, input_frame_rate_hz=50.0, ctc_vocab_size=30)
    return BuildContext()


# ----------------------------------------------------------------------------- helpers


def _fail(who: object, check: str, detail: str) -> ConformanceError:
    name = who.__name__ if isinstance(who, type) else type(who).__name__
    return ConformanceError(f"{name}: {check} failed: {detail}")


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and a fixed seed inside; each submodule's mode and the caller's RNG restored after."""
    modes = [(m, m.training) for m in module.modules()]
    cuda = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(SEED)
        module.eval()
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training


def _device(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _call(component: nn.Module, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call a method; an exception becomes a ConformanceError naming the component (cause kept)."""
    try:
        return getattr(component, method)(*args, **kwargs)
    except Exception as exc:  # any crash of the component is a failed check, reported as such
        raise _fail(component, method, f"raised {type(exc).__name__}: {exc}") from exc


def _pad_right(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack (t_i, ...) items into (b, max t, ...) with zeros after each item, as a collator does."""
    return nn.utils.rnn.pad_sequence(list(items), batch_first=True)


def _weighted_sum(x: torch.Tensor) -> torch.Tensor:
    # random weights: a plain sum can cancel out (e.g. after a norm) and hide a missing gradient
    return (x * torch.randn_like(x)).sum()


def _check_attributes(component: object, spec: Mapping[str, tuple[type, ...]]) -> None:
    for name, types in spec.items():
        if not hasattr(component, name):
            raise _fail(component, "protocol attributes", f"missing attribute '{name}'")
        value = getattr(component, name)
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise _fail(component, "protocol attributes",
                        f"'{name}' is {type(value).__name__} {value!r}, expected {wanted}")
        if isinstance(value, (int, float)) and value <= 0:
            raise _fail(component, "protocol attributes", f"'{name}' must be positive, got {value!r}")


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_common(component: object, attributes: Mapping[str, tuple[type, ...]]) -> None:
    """Module type, protocol attributes, freeze groups that match parameters, export_options."""
    if not isinstance(component, nn.Module):
        raise _fail(component, "module type", "is not a torch.nn.Module; subclass nn.Module")
    _check_attributes(component, {**attributes, "freeze_groups": (dict,)})
    names = [n for n, _ in component.named_parameters()]
    for group, prefixes in component.freeze_groups.items():
        if not isinstance(group, str) or not _is_str_list(prefixes):
            raise _fail(component, "freeze_groups",
                        f"group {group!r} must map a str to a list of str prefixes, got {prefixes!r}")
        for prefix in prefixes:
            if not any(n.startswith(prefix) for n in names):
                raise _fail(component, "freeze_groups",
                            f"prefix '{prefix}' of group '{group}' matches no parameter name")
    with tempfile.TemporaryDirectory() as tmp:
        exported = _call(component, "export_options", Path(tmp))
    if not isinstance(exported, dict):
        raise _fail(component, "export_options", f"returned {type(exported).__name__}, expected dict")


def _check_sequence(
    component: object, what: str, x: object, lengths: object, batch: int, dim: int
) -> None:
    """x (b, t, dim) finite and zero past ``lengths``; lengths (b,) integers within t."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != batch or x.shape[2] != dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _fail(component, "output shape", f"{what} is {shape}, expected (b={batch}, t, {dim})")
    if (not isinstance(lengths, torch.Tensor) or lengths.shape != (batch,)
            or lengths.is_floating_point() or lengths.dtype == torch.bool):
        raise _fail(component, "output lengths", f"lengths must be an integer (b={batch},) tensor")
    if (lengths < 0).any() or int(lengths.max()) > x.shape[1]:
        raise _fail(component, "output lengths",
                    f"lengths {lengths.tolist()} do not fit the {x.shape[1]} positions of {what}")
    if not torch.isfinite(x).all():
        raise _fail(component, "finite outputs", f"{what} holds NaN or inf")
    for i, n in enumerate(lengths.tolist()):
        tail = x[i, n:]
        if tail.numel() and bool(tail.ne(0).any()):
            raise _fail(component, "zero padding",
                        f"{what}[{i}, {n}:] is not zero (max |x| = {tail.abs().max().item():.3g}); "
                        "zero padded positions (e.g. masked_fill) so padding stays inert downstream")


def _check_same(component: object, what: str, i: int, batched: torch.Tensor,
                alone: torch.Tensor, atol: float) -> None:
    """Item ``i``'s valid outputs computed alone equal those computed in a padded batch."""
    if batched.shape != alone.shape:
        raise _fail(component, "padding invariance",
                    f"item {i}: {what} is {tuple(alone.shape)} alone, {tuple(batched.shape)} in a batch")
    diff = (batched.float() - alone.float()).abs().max().item() if alone.numel() else 0.0
    if not diff <= atol:
        raise _fail(component, "padding invariance",
                    f"item {i}: {what} differs by {diff:.3g} alone vs in a padded batch (atol {atol:g}); "
                    "keep padding out of normalisation, attention and pooling")


def _check_gradients(
    component: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    inputs: Sequence[tuple[str, torch.Tensor]],
    require_all_grads: bool,
    ignore: Iterable[str],
) -> None:
    """Backpropagate ``loss_fn()``; trainable parameters and ``inputs`` must get finite gradients.

    The parameters' previous ``.grad`` are restored afterwards.
    """
    params = [(n, p) for n, p in component.named_parameters() if p.requires_grad]
    saved = [p.grad for _, p in params]
    for _, p in params:
        p.grad = None
    try:
        with torch.enable_grad():
            loss = loss_fn()
            if not loss.requires_grad:
                raise _fail(component, "gradient flow",
                            "the outputs do not require grad (detached, or computed under no_grad)")
            loss.backward()
        _judge_gradients(component, params, inputs, require_all_grads, tuple(ignore))
    finally:
        for (_, p), grad in zip(params, saved):
            p.grad = grad


def _judge_gradients(
    component: nn.Module,
    params: list[tuple[str, nn.Parameter]],
    inputs: Sequence[tuple[str, torch.Tensor]],
    require_all_grads: bool,
    ignore: tuple[str, ...],
) -> None:
    for name, x in [*params, *inputs]:
        if x.grad is not None and not torch.isfinite(x.grad).all():
            raise _fail(component, "gradient flow", f"gradient of '{name}' holds NaN or inf")
    for name, x in inputs:
        if x.grad is None:
            raise _fail(component, "gradient flow", f"no gradient reaches the {name}")
    if params and all(p.grad is None for _, p in params):
        raise _fail(component, "gradient flow", "no trainable parameter gets a gradient from the outputs")
    missing = [n for n, p in params if p.grad is None and not n.startswith(ignore)]
    if require_all_grads and missing:
        raise _fail(component, "gradient flow",
                    f"trainable parameters got no gradient: {', '.join(missing[:8])}; if they are "
                    "legitimately unused pass ignore=(prefix, ...) or require_all_grads=False")


# ----------------------------------------------------------------------------- encoder


def check_encoder(
    encoder: nn.Module,
    *,
    batch_seconds: Sequence[float] = (0.5, 0.8),
    atol: float = 1e-5,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> None:
    """Check an ``Encoder``: attributes, shapes, lengths, zero padding, padding invariance, gradients.

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
    device = _device(encoder)
    sizes = [max(1, round(s * encoder.sample_rate)) for s in batch_seconds]
    lengths = torch.tensor(sizes, device=device)
    with _evaluating(encoder):
        items = [torch.randn(n, device=device) for n in sizes]
        waves = _pad_right(items)  # (b, s)
        with torch.no_grad():
            out = _run_encoder(encoder, waves, lengths)
            for i, item in enumerate(items):
                alone = _run_encoder(encoder, item[None], lengths[i : i + 1])
                n = int(alone.lengths[0])
                _check_same(encoder, "hidden", i, out.hidden[i, :n], alone.hidden[0, :n], atol)
        _check_gradients(encoder, lambda: _weighted_sum(encoder(waves, lengths).hidden), (),
                         require_all_grads, ignore)


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


# ----------------------------------------------------------------------------- bridge


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


# ----------------------------------------------------------------------------- decoder


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


# ----------------------------------------------------------------------------- registered components

_CHECKS: dict[str, Callable[..., None]] = {
    "encoder": check_encoder, "bridge": check_bridge, "decoder": check_decoder,
}


def check_component(
    kind: Kind,
    name: str,
    options: Mapping[str, Any],
    *,
    plugin_set: PluginSet | None = None,
    ctx: BuildContext | None = None,
    atol: float = 1e-5,
    require_all_grads: bool = True,
    ignore: Iterable[str] = (),
) -> nn.Module:
    """Build a registered component from ``options`` and run the check of its kind.

    Args:
        kind: "encoder", "bridge" or "decoder".
        name: the registered name or an alias.
        options: the component's own options; keep them tiny (random weights, few layers).
        plugin_set: where to look it up; default ``nue_core.plugins.get_plugins()``.
        ctx: build context; default ``default_context(kind)`` (a bridge gets in_dim=16, out_dim=24,
            input_frame_rate_hz=50, ctc_vocab_size=30).
        atol, require_all_grads, ignore: passed to the check.

    Returns:
        The built module, checked.

    Raises:
        ConformanceError: a failed check; ConfigError: the options do not validate.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    entry = (plugin_set or get_plugins()).registry.get(kind, name)
    if entry.options.model_config.get("extra") != "forbid":
        raise _fail(entry.options, "options model", f"{kind} '{name}' accepts unknown keys; "
                    "set model_config = ConfigDict(extra='forbid') so a typo is an error")
    ctx = ctx or default_context(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = entry.build(dict(options), ctx, where=f"{kind} '{name}'")
    if kind == "bridge":
        for size in ("in_dim", "out_dim"):
            if getattr(module, size, None) != getattr(ctx, size):
                raise _fail(module, "protocol attributes", f"{size} is {getattr(module, size, None)!r} "
                            f"but the context supplied {getattr(ctx, size)!r}; take it from ctx.require('{size}')")
    _CHECKS[kind](module, atol=atol, require_all_grads=require_all_grads, ignore=ignore)
    return module


def check_plugin(
    plugin_name: str,
    examples: Mapping[str, Mapping[str, Any] | Example],
    plugin_set: PluginSet | None = None,
) -> dict[str, nn.Module]:
    """Check every component a plugin registers, each built from its example.

    Args:
        plugin_name: the plugin's name (its entry-point name in group ``nue``).
        examples: ``"kind:name"`` (registered name, not an alias) -> tiny options dict or an
            ``Example``. Every component the plugin registers needs one, so none is forgotten.
        plugin_set: default ``nue_core.plugins.get_plugins()``.

    Returns:
        ``"kind:name"`` -> the built, checked module.

    Raises:
        ConformanceError: the plugin is missing or broken, an example is missing or unknown, or
            components fail (all failures are listed in one message).
    """
    plugin_set = plugin_set or get_plugins()
    registered = _registered_by(plugin_set, plugin_name)
    missing = sorted(set(registered) - set(examples))
    unknown = sorted(set(examples) - set(registered))
    if missing or unknown:
        raise ConformanceError(
            f"plugin '{plugin_name}': examples missing for {missing} and not registered by it: "
            f"{unknown}; give one 'kind:name' -> tiny options per component: {registered}"
        )
    built: dict[str, nn.Module] = {}
    failures: list[str] = []
    for key in registered:
        kind, name = key.split(":", 1)
        example = examples[key]
        ex = example if isinstance(example, Example) else Example(options=dict(example))
        try:
            built[key] = check_component(
                kind, name, ex.options, plugin_set=plugin_set, ctx=ex.ctx, atol=ex.atol,  # type: ignore[arg-type]
                require_all_grads=ex.require_all_grads, ignore=ex.ignore,
            )
        except (ConformanceError, NueError) as exc:  # collect: one run shows every failure
            failures.append(f"  {key}: {exc}")
    if failures:
        raise ConformanceError(f"plugin '{plugin_name}': {len(failures)} of {len(registered)} "
                               "components failed:\n" + "\n".join(failures))
    return built


def _registered_by(plugin_set: PluginSet, plugin_name: str) -> list[str]:
    """``"kind:name"`` of each component the plugin registered; errors if it is absent or broken."""
    info = next((p for p in plugin_set.plugins if p.name == plugin_name), None)
    if info is None:
        loaded = ", ".join(p.name for p in plugin_set.plugins) or "none"
        raise ConformanceError(f"plugin '{plugin_name}' is not loaded (loaded: {loaded}); is it "
                               "installed with an entry point in group 'nue'?")
    if info.error:
        raise ConformanceError(f"plugin '{plugin_name}' failed to load: {info.error}")
    return [f"{kind}:{e.name}" for kind in KINDS for e in plugin_set.registry.entries(kind)
            if e.plugin == plugin_name]
