"""``check_component`` and ``check_plugin``: build registered components and check each by kind."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from nue_core.errors import NueError
from nue_core.plugins import PluginSet, get_plugins
from nue_core.registry import KINDS, BuildContext, Kind
from nue_core.testing._common import SEED, ConformanceError, Example, _fail, default_context
from nue_core.testing.bridge import check_bridge
from nue_core.testing.decoder import check_decoder
from nue_core.testing.encoder import check_encoder

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
