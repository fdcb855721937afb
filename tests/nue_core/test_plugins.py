"""The plugin manager with fake plugins; installed entry points are kept out."""

import importlib.metadata as metadata

import pytest
from pydantic import BaseModel, ConfigDict

from nue_core import hookimpl
from nue_core.errors import ConfigError, DuplicateComponentError, UnknownComponentError
from nue_core.plugins import apply_registry_file, load_plugins
from nue_core.registry import ComponentEntry, Registry


class WidthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 4


def _factory(options, ctx):
    return ("built", options)


class GoodPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("toy-encoder", _factory, options=WidthOptions, aliases=("toy",))

    @hookimpl
    def register_architectures(self, register):
        register("org/toy", {"model_type": "toy"})


class RaisingPlugin:
    @hookimpl
    def register_bridges(self, register):
        register("half-registered", _factory)
        raise RuntimeError("boom at registration")


class ClashingPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("fresh-name", _factory)  # registered first, must be rolled back with the clash
        register("other", _factory, aliases=("toy",))


def _load(*plugins, files=()):
    return load_plugins(plugins=[(type(p).__name__, p) for p in plugins], registry_files=list(files))


def test_good_plugin_registers_component_alias_and_architecture():
    loaded = _load(GoodPlugin())
    entry = loaded.registry.get("encoder", "toy")
    assert entry.name == "toy-encoder" and entry.plugin == "GoodPlugin"
    assert loaded.registry.architectures["org/toy"] == {"model_type": "toy"}
    assert loaded.plugins[0].hooks == ["register_encoders", "register_architectures"]
    assert not loaded.broken


def test_plugin_raising_at_registration_is_reported_and_rolled_back():
    loaded = _load(RaisingPlugin(), GoodPlugin())
    (broken,) = loaded.broken
    assert broken.name == "RaisingPlugin" and "boom at registration" in broken.error
    assert loaded.registry.names("bridge") == []  # nothing half-registered
    assert loaded.registry.names("encoder") == ["toy-encoder"]


def test_duplicate_name_or_alias_is_reported_with_both_plugins():
    loaded = _load(GoodPlugin(), ClashingPlugin())
    (broken,) = loaded.broken
    assert broken.name == "ClashingPlugin"
    assert "'toy'" in broken.error and "GoodPlugin" in broken.error
    with pytest.raises(UnknownComponentError):
        loaded.registry.get("encoder", "other")
    assert loaded.registry.names("encoder") == ["toy-encoder"]


def test_registry_add_refuses_duplicates():
    reg = Registry()
    reg.add(ComponentEntry("encoder", "a", _factory, WidthOptions, plugin="p1"))
    with pytest.raises(DuplicateComponentError, match="p1"):
        reg.add(ComponentEntry("encoder", "a", _factory, WidthOptions, plugin="p2"))
    reg.add(ComponentEntry("bridge", "a", _factory, WidthOptions, plugin="p2"))  # other kind is fine


def test_did_you_mean_lists_installed_names():
    loaded = _load(GoodPlugin())
    with pytest.raises(UnknownComponentError) as err:
        loaded.registry.get("encoder", "toy-encodr")
    text = str(err.value)
    assert "did you mean 'toy-encoder'" in text and "Installed: toy-encoder" in text


def test_options_validation_names_key_and_allowed(tmp_path):
    entry = _load(GoodPlugin()).registry.get("encoder", "toy-encoder")
    with pytest.raises(ConfigError) as err:
        entry.validate_options({"widht": 3}, where="encoder 'toy-encoder' options")
    assert "widht" in str(err.value) and "allowed: width" in str(err.value)
    assert entry.build({"width": 3}, ctx=None, where="x")[1].width == 3


def test_registry_file_adds_aliases_defaults_presets(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text(
        "aliases: {encoder: {tiny: toy-encoder, ghost: not-installed}}\n"
        "defaults: {encoder: {toy-encoder: {width: 9}}}\n"
        "presets: {p1: {encoder: toy, bridge: b, decoder: d}}\n"
    )
    loaded = _load(GoodPlugin(), files=[path])
    assert loaded.registry.get("encoder", "tiny").name == "toy-encoder"
    assert "ghost" not in loaded.registry.names("encoder", with_aliases=True)
    assert loaded.component_defaults["encoder"]["toy-encoder"] == {"width": 9}
    assert "p1" in loaded.presets


def test_registry_file_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text("preset: {}\n")
    with pytest.raises(ConfigError, match="allowed: aliases"):
        apply_registry_file(_load(), path)


def test_entry_point_that_fails_to_import_is_reported(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="nue_no_such_module.plugin", group="nue")
    real = metadata.entry_points

    def fake_entry_points(group=None, **kw):
        eps = list(real(group=group)) if group else []
        return eps + [broken] if group == "nue" else real(group=group, **kw)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    loaded = load_plugins(registry_files=[])
    info = next(p for p in loaded.plugins if p.name == "broken")
    assert "import failed" in info.error and "nue_no_such_module" in info.error
    # the first-party plugins still load
    assert {"nue_hf", "nue_bridges"} <= {p.name for p in loaded.plugins if not p.error}


class NeedsAnExtraPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("needs-extra", _factory, description="static text", unavailable='libfoo is missing; pip install "x[foo]"')
        register("ready", _factory, description="works here")


def test_component_unavailable_here_keeps_its_description_and_says_why():
    loaded = _load(NeedsAnExtraPlugin())
    assert not loaded.broken
    entry = loaded.registry.get("encoder", "needs-extra")
    assert entry.description == "static text"  # generated docs read this: it must not vary per environment
    assert entry.unavailable == 'libfoo is missing; pip install "x[foo]"'
    assert loaded.registry.get("encoder", "ready").unavailable == ""


# --- conflicts, validation, containment (issue 14, class 4) -----------------------------------------

class TakesConv:
    @hookimpl
    def register_bridges(self, register):
        register("mine", _factory)
        register("conv", _factory)


def test_a_first_party_module_registers_first_whatever_the_order_given():
    import nue_bridges.plugin

    loaded = load_plugins([("aaa", TakesConv()), ("nue_bridges", nue_bridges.plugin)], registry_files=[])
    assert [p.name for p in loaded.plugins] == ["nue_bridges", "aaa"]
    assert loaded.plugins[0].first_party and not loaded.plugins[1].first_party
    assert loaded.plugins[0].distribution == "nue-asr"
    (broken,) = loaded.broken
    assert broken.name == "aaa" and "first-party plugin 'nue_bridges'" in broken.error
    assert loaded.registry.get("bridge", "conv").plugin == "nue_bridges"
    assert "mine" not in loaded.registry.names("bridge")  # the offender is disabled as a whole


def test_a_module_named_like_a_first_party_plugin_is_not_first_party():
    import types

    fake = types.SimpleNamespace(__name__="nue_bridges.plugin")  # not the module itself
    loaded = load_plugins([("fake", fake)], registry_files=[])
    assert not loaded.plugins[0].first_party


class _Registers:
    """A plugin whose hooks make the given calls (``hook -> [(args, kwargs), ...]``)."""

    def __init__(self, **calls):
        self.calls = calls

    def _run(self, hook, register):
        for args, kwargs in self.calls.get(hook, []):
            register(*args, **kwargs)

    @hookimpl
    def register_bridges(self, register):
        self._run("bridges", register)

    @hookimpl
    def register_model_loaders(self, register):
        self._run("loaders", register)

    @hookimpl
    def register_exporters(self, register):
        self._run("exporters", register)

    @hookimpl
    def register_architectures(self, register):
        self._run("architectures", register)


@pytest.mark.parametrize("hook,args,what", [
    ("loaders", ("layout", _factory, _factory), "model loader 'layout'"),
    ("exporters", ("layout", _factory), "export format 'layout'"),
    ("architectures", ("org/x", {"model_type": "a"}), "architecture 'org/x'"),
])
def test_loader_exporter_and_architecture_conflicts_disable_the_later_plugin(hook, args, what):
    first = _Registers(**{hook: [(args, {})]})
    clashing = args[:-1] + ({"model_type": "b"},) if hook == "architectures" else args
    second = _Registers(**{hook: [(clashing, {})], "bridges": [(("b2", _factory), {})]})
    loaded = load_plugins([("p1", first), ("p2", second)], registry_files=[])
    (broken,) = loaded.broken
    assert broken.name == "p2" and what in broken.error and "'p1'" in broken.error and "'p2'" in broken.error
    assert "b2" not in loaded.registry.names("bridge")


def test_the_same_architecture_from_two_plugins_is_no_conflict():
    config = {"model_type": "a"}
    loaded = load_plugins([("p1", _Registers(architectures=[(("org/x", config), {})])),
                           ("p2", _Registers(architectures=[(("org/x", dict(config)), {})]))], registry_files=[])
    assert not loaded.broken


def test_a_name_registered_twice_by_one_plugin_disables_it():
    loaded = load_plugins([("p", _Registers(bridges=[(("a", _factory), {}), (("b", _factory), {"aliases": ("a",)})]))],
                          registry_files=[])
    (broken,) = loaded.broken
    assert "bridge name 'a' is registered twice by plugin 'p'" in broken.error


class SwallowsItsError:
    @hookimpl
    def register_bridges(self, register):
        try:
            register("ok", _factory, options=42)
        except Exception:
            pass  # an invalid registration does not become valid by being caught
        register("other", _factory)


def test_an_invalid_registration_the_plugin_catches_still_disables_it():
    loaded = load_plugins([("swallows", SwallowsItsError())], registry_files=[])
    (broken,) = loaded.broken
    assert "invalid registration" in broken.error and "options must be" in broken.error
    assert loaded.registry.names("bridge") == []


@pytest.mark.parametrize("name,ok", [
    ("conv", True), ("s3prl:hubert", True), ("ctc_compress", True), ("gpt-neox", True), ("q-former", True),
    ("llama3", True), ("a" * 64, True), ("a" * 65, False), ("", False), ("Conv", False), ("two words", False),
    ("-lead", False), ("new\nline", False), ("név", False),
])
def test_component_name_rules(name, ok):
    from nue_core.errors import PluginError
    from nue_core.registry import check_name

    if ok:
        assert check_name(name, "bridge name") == name
    else:
        with pytest.raises(PluginError, match="bridge name"):
            check_name(name, "bridge name")


def test_every_installed_first_party_name_follows_the_rules():
    from nue_core.plugins import get_plugins
    from nue_core.registry import KINDS, NAME_RULE

    loaded = get_plugins()
    assert not [p.name for p in loaded.plugins if p.first_party and p.error]
    for kind in KINDS:
        for name in loaded.registry.names(kind, with_aliases=True):
            assert NAME_RULE.fullmatch(name), (kind, name)


def test_an_error_is_reported_on_one_line_even_when_its_message_is_hostile():
    from nue_core.plugins import short_error

    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert short_error(ValueError("a\n  b\tc")) == "ValueError: a b c"
    assert short_error(Hostile()) == "Hostile: <unprintable message>"
    assert short_error(SystemExit()) == "SystemExit"
    assert len(short_error(ValueError("x" * 10_000))) < 400


def test_every_hookspec_is_called_and_has_a_checked_register():
    """The hooks run are read from hookspecs.py; each gets a register callback of its own."""
    from nue_core import hookspecs
    from nue_core.plugins import _HOOKS, PluginInfo, _registrar, _Staged

    declared = [n for n, f in vars(hookspecs).items() if hasattr(f, "nue_spec")]
    assert list(_HOOKS) == declared and len(declared) == 6
    for hook in _HOOKS:
        assert callable(_registrar(hook, PluginInfo("p", "m"), _Staged()))


def test_get_plugins_is_cached_until_cleared(monkeypatch):
    import nue_core.plugins as plugins_module

    calls = []
    monkeypatch.setattr(plugins_module, "load_plugins", lambda: calls.append(1) or object())
    plugins_module.get_plugins.cache_clear()
    try:
        first = plugins_module.get_plugins()
        assert plugins_module.get_plugins() is first and len(calls) == 1
        plugins_module.get_plugins.cache_clear()
        assert plugins_module.get_plugins() is not first and len(calls) == 2
    finally:
        plugins_module.get_plugins.cache_clear()  # the next user loads the real plugins again


def test_first_party_only_leaves_third_party_entry_points_unimported(monkeypatch):
    import nue_core.plugins as plugins_module

    class _Dist:
        def __init__(self, name):
            self.name, self.version = name, "1.0"

    class _EntryPoint:
        def __init__(self, name, dist):
            self.name, self.value, self.dist = name, f"{name}.plugin", _Dist(dist)

        def load(self):
            if self.dist.name == "other-dist":
                raise AssertionError("a third-party plugin was imported")
            return GoodPlugin()

    points = [_EntryPoint("third", "other-dist"), _EntryPoint("mine", "nue_asr")]
    monkeypatch.setattr(plugins_module.metadata, "entry_points", lambda group: points)
    loaded = load_plugins(registry_files=[], first_party_only=True)
    assert [(p.name, p.first_party) for p in loaded.plugins] == [("mine", True)] and not loaded.broken


def test_nue_hf_registers_the_architectures_it_knows_without_registry_data():
    import nue_hf.plugin
    from nue_hf.architectures import ARCHITECTURES

    loaded = load_plugins([("nue_hf", nue_hf.plugin)], registry_files=[])
    assert loaded.registry.architectures == ARCHITECTURES
    assert set(loaded.architecture_plugins.values()) == {"nue_hf"}
    assert "register_architectures" in loaded.plugins[0].hooks
