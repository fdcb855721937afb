"""What every conformance check shares: the error, the example record, and helpers for attributes,
sequence outputs, padding invariance, gradients and running a module in eval mode.

Shape legend: b = batch, t = frames, d = width.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from nue_core.registry import BuildContext, Kind

SEED = 0


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


def _fail(who: object, check: str, detail: str) -> ConformanceError:
    name = who.__name__ if isinstance(who, type) else type(who).__name__
    return ConformanceError(f"{name}: {check} failed: {detail}")


@contextlib.contextmanager
def _running(module: nn.Module, training: bool = False) -> Iterator[None]:
    """Train or eval mode and a fixed seed inside; each submodule's mode and the caller's RNG
    restored after."""
    modes = [(m, m.training) for m in module.modules()]
    cuda = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(SEED)
        module.train(training)
        try:
            yield
        finally:
            for m, training_before in modes:
                m.training = training_before


def _evaluating(module: nn.Module) -> contextlib.AbstractContextManager[None]:
    """Eval mode and a fixed seed inside (see ``_running``)."""
    return _running(module, training=False)


def _device(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _float_dtype(module: nn.Module) -> torch.dtype:
    """dtype of the module's first floating-point parameter (float32 without one)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


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
    check: str = "gradient flow",
) -> None:
    """Backpropagate ``loss_fn()``; trainable parameters and ``inputs`` must get finite gradients.

    ``check`` names the check in failures. The parameters' previous ``.grad`` are restored afterwards.
    """
    params = [(n, p) for n, p in component.named_parameters() if p.requires_grad]
    saved = [p.grad for _, p in params]
    for _, p in params:
        p.grad = None
    try:
        with torch.enable_grad():
            loss = loss_fn()
            if not loss.requires_grad:
                raise _fail(component, check,
                            "the outputs do not require grad (detached, or computed under no_grad)")
            loss.backward()
        _judge_gradients(component, params, inputs, require_all_grads, tuple(ignore), check)
    finally:
        for (_, p), grad in zip(params, saved):
            p.grad = grad


def _judge_gradients(
    component: nn.Module,
    params: list[tuple[str, nn.Parameter]],
    inputs: Sequence[tuple[str, torch.Tensor]],
    require_all_grads: bool,
    ignore: tuple[str, ...],
    check: str,
) -> None:
    for name, x in [*params, *inputs]:
        if x.grad is not None and not torch.isfinite(x.grad).all():
            raise _fail(component, check, f"gradient of '{name}' holds NaN or inf")
    for name, x in inputs:
        if x.grad is None:
            raise _fail(component, check, f"no gradient reaches the {name}")
    if params and all(p.grad is None for _, p in params):
        raise _fail(component, check, "no trainable parameter gets a gradient from the outputs")
    missing = [n for n, p in params if p.grad is None and not n.startswith(ignore)]
    if require_all_grads and missing:
        raise _fail(component, check,
                    f"trainable parameters got no gradient: {', '.join(missing[:8])}; if they are "
                    "legitimately unused pass ignore=(prefix, ...) or require_all_grads=False")


@contextlib.contextmanager
def _stage(component: object, check: str, context: str) -> Iterator[None]:
    """Report a failed inner check as ``check`` failing, with ``context`` before its detail."""
    try:
        yield
    except ConformanceError as exc:
        detail = str(exc).split(": ", 1)[-1]  # drop the class name: _fail puts it back
        raise _fail(component, check, f"{context}: {detail}") from exc


def _check_shortest(
    component: nn.Module,
    check: str,
    probe_max: int,
    longer: int,
    describe: Callable[[int], str],
    make_item: Callable[[int], torch.Tensor],
    run: Callable[[torch.Tensor, torch.Tensor], Any],
) -> None:
    """The shortest input that ``output_lengths`` gives an output runs alone and beside a longer one.

    The transcriber admits any input that ``output_lengths`` gives at least one output, so that
    input must run, alone and batched with a ``longer`` one.

    Args:
        check: the check's name in failures ("shortest clip", "shortest input").
        probe_max: input sizes 1..probe_max are searched.
        describe: the input of a given size in words, for failures ("a clip of 320 samples").
        make_item: a random input of a given size, e.g. (s,) samples or (t, d) frames.
        run: runs the component on (b, size, ...) right-padded inputs and (b,) lengths.
    """
    probe = torch.arange(1, probe_max + 1)  # candidate input sizes
    counts = torch.as_tensor(_call(component, "output_lengths", probe)).cpu()
    admitted = (counts >= 1).nonzero()
    if not len(admitted):
        raise _fail(component, check, f"output_lengths gives no output to any input up to {probe_max}")
    shortest = int(probe[admitted[0, 0]])
    device = _device(component)
    with _stage(component, check, f"{describe(shortest)} (the transcriber accepts it)"):
        for sizes in ([shortest], [shortest, max(longer, shortest + 1)]):
            run(_pad_right([make_item(n) for n in sizes]), torch.tensor(sizes, device=device))
