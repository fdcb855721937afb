"""check_component and check_plugin build registered toy components, check them and report failures."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from nue_core.hookspecs import hookimpl
from nue_core.plugins import PluginSet, load_plugins
from nue_core.registry import BuildContext
from nue_core.testing import ConformanceError, Example, check_component, check_plugin
from tests.nue_core.testing.fakes import TimeNormBridge, ToyBridge, ToyDecoder, ToyEncoder


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 8


class LooseOptions(BaseModel):
    dim: int = 8


class ToyPlugin:
    """A plugin object registering one component of each kind (and a broken bridge)."""

    def __init__(self, broken_bridge: bool = False) -> None:
        self.broken_bridge = broken_bridge

    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register("toy-encoder", lambda o, ctx: ToyEncoder(o.dim), options=ToyOptions)

    @hookimpl
    def register_bridges(self, register: Any) -> None:
        cls = TimeNormBridge if self.broken_bridge else ToyBridge
        register("toy-bridge", lambda o, ctx: cls(ctx.require("in_dim"), ctx.require("out_dim")),
                 aliases=("tb",))

    @hookimpl
    def register_decoders(self, register: Any) -> None:
        register("toy-decoder", lambda o, ctx: ToyDecoder(o.dim), options=ToyOptions)


EXAMPLES = {"encoder:toy-encoder": {"dim": 4}, "bridge:toy-bridge": {}, "decoder:toy-decoder": {}}


def _plugins(*plugins: tuple[str, object]) -> PluginSet:
    return load_plugins(list(plugins), registry_files=[])


def test_check_component_builds_with_default_context_and_returns_the_module() -> None:
    plugin_set = _plugins(("toy", ToyPlugin()))
    bridge = check_component("bridge", "tb", {}, plugin_set=plugin_set)
    assert (bridge.in_dim, bridge.out_dim) == (16, 24)
    encoder = check_component("encoder", "toy-encoder", {"dim": 4}, plugin_set=plugin_set)
    assert encoder.output_dim == 4
    ctx = BuildContext(in_dim=5, out_dim=7)
    assert check_component("bridge", "toy-bridge", {}, plugin_set=plugin_set, ctx=ctx).out_dim == 7


def test_check_component_refuses_loose_options_and_ignored_sizes() -> None:
    class Loose:
        @hookimpl
        def register_bridges(self, register: Any) -> None:
            register("loose", lambda o, ctx: ToyBridge(16, 24), options=LooseOptions)
            register("fixed", lambda o, ctx: ToyBridge(16, 8))

    plugin_set = _plugins(("loose", Loose()))
    with pytest.raises(ConformanceError, match="LooseOptions: options model failed: .*extra='forbid'"):
        check_component("bridge", "loose", {}, plugin_set=plugin_set)
    with pytest.raises(ConformanceError, match="out_dim is 8 but the context supplied 24"):
        check_component("bridge", "fixed", {}, plugin_set=plugin_set)


def test_check_plugin_passes_a_correct_plugin() -> None:
    built = check_plugin("toy", EXAMPLES, _plugins(("toy", ToyPlugin())))
    assert sorted(built) == sorted(EXAMPLES)


def test_check_plugin_accepts_example_objects() -> None:
    examples: dict[str, Any] = {**EXAMPLES, "bridge:toy-bridge": Example(ctx=BuildContext(in_dim=3, out_dim=5))}
    built = check_plugin("toy", examples, _plugins(("toy", ToyPlugin())))
    assert built["bridge:toy-bridge"].in_dim == 3


def test_check_plugin_requires_an_example_per_component() -> None:
    examples = {k: v for k, v in EXAMPLES.items() if k != "decoder:toy-decoder"}
    with pytest.raises(ConformanceError, match=r"examples missing for \['decoder:toy-decoder'\]"):
        check_plugin("toy", examples, _plugins(("toy", ToyPlugin())))
    with pytest.raises(ConformanceError, match=r"not registered by it: \['bridge:tb'\]"):
        check_plugin("toy", {**EXAMPLES, "bridge:tb": {}}, _plugins(("toy", ToyPlugin())))


def test_check_plugin_lists_every_failing_component() -> None:
    examples = {**EXAMPLES, "encoder:toy-encoder": {"dimm": 4}}
    with pytest.raises(ConformanceError, match="2 of 3 components failed") as info:
        check_plugin("toy", examples, _plugins(("toy", ToyPlugin(broken_bridge=True))))
    message = str(info.value)
    assert "encoder:toy-encoder:" in message and "dimm" in message
    assert "bridge:toy-bridge: TimeNormBridge: padding invariance failed" in message


def test_check_plugin_reports_missing_and_broken_plugins() -> None:
    class Exploding:
        @hookimpl
        def register_bridges(self, register: Any) -> None:
            raise RuntimeError("boom")

    plugin_set = _plugins(("toy", ToyPlugin()), ("bad", Exploding()))
    with pytest.raises(ConformanceError, match="plugin 'nope' is not loaded .loaded: toy, bad."):
        check_plugin("nope", {}, plugin_set)
    with pytest.raises(ConformanceError, match="plugin 'bad' failed to load: register_bridges failed"):
        check_plugin("bad", {}, plugin_set)


def test_check_plugin_uses_the_process_wide_plugins_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import nue_core.testing.plugin

    monkeypatch.setattr(nue_core.testing.plugin, "get_plugins", lambda: _plugins(("toy", ToyPlugin())))
    assert sorted(check_plugin("toy", EXAMPLES)) == sorted(EXAMPLES)
