"""A plugin that raises at import, registration or build time is reported by name; the rest keep working."""

import importlib.metadata as metadata
import logging
import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from pydantic import BaseModel, ConfigDict

from nue_core import hookimpl
from nue_core.checkpoint import load
from nue_core.composer import compose
from nue_core.errors import CheckpointError, ConfigError
from nue_core.plugins import get_plugins, load_plugins
from tests.conftest import tiny_config


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _explode(options, ctx):
    raise RuntimeError("cuda kernels missing")


class BuildFails:
    @hookimpl
    def register_bridges(self, register):
        register("fragile", _explode, options=Opts)


def test_build_time_failure_names_component_and_plugin():
    import importlib

    plugins = load_plugins([("nue_hf", importlib.import_module("nue_hf.plugin")), ("fragile_plugin", BuildFails())])
    cfg = tiny_config()
    cfg["bridge"] = {"name": "fragile"}
    with pytest.raises(ConfigError) as err:
        compose(cfg, plugins=plugins)
    assert "bridge 'fragile'" in str(err.value) and "fragile_plugin" in str(err.value) and "cuda kernels missing" in str(err.value)


def test_cli_survives_plugins_broken_at_import_and_registration(tmp_path):
    """A real installed distribution with three broken entry points: the CLI lists them and still composes."""
    pkg = tmp_path / "site"
    (pkg / "badplugins").mkdir(parents=True)
    (pkg / "badplugins" / "__init__.py").write_text("")
    (pkg / "badplugins" / "import_boom.py").write_text("raise ImportError('needs libfoo.so')\n")
    (pkg / "badplugins" / "exit_boom.py").write_text("import sys\nsys.exit(0)\n")  # once ended every verb silently
    (pkg / "badplugins" / "register_boom.py").write_text(textwrap.dedent("""
        from nue_core import hookimpl
        @hookimpl
        def register_encoders(register):
            raise ValueError('bad registration')
    """))
    dist = pkg / "badplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nue]\nimport_boom = badplugins.import_boom\nregister_boom = badplugins.register_boom\n"
                                      "exit_boom = badplugins.exit_boom\n")
    env = {**os.environ, "PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    nue = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    listed = subprocess.run([*nue, "plugins"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "import_boom" in listed.stderr and "needs libfoo.so" in listed.stderr
    assert "register_boom" in listed.stderr and "bad registration" in listed.stderr
    assert "exit_boom" in listed.stderr and "SystemExit" in listed.stderr
    composed = subprocess.run([*nue, "compose", "--preset", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert composed.returncode == 0 and "encoder" in composed.stdout, composed.stderr


def test_no_trust_remote_code_anywhere_in_the_package():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = [str(p) for folder in ("nue_core", "plugins") for p in (root / folder).rglob("*.py")
                 if "trust_remote_code=True" in p.read_text(encoding="utf-8")]
    assert offenders == []
    assert get_plugins() is not None


# --- issue 14, class 4: a plugin cannot hurt others ------------------------------------------------


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, {entry_point: module_source})``: a third-party distribution on sys.path, found
    by ``importlib.metadata`` as an installed one (module names are unique per call: sys.modules caches)."""

    def _install(dist: str, modules: dict[str, str]) -> None:
        package = f"{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        root = tmp_path / dist
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        lines = []
        for entry, source in modules.items():
            (root / package / f"{entry}.py").write_text(textwrap.dedent(source))
            lines.append(f"{entry} = {package}.{entry}")
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[nue]\n" + "\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(root))

    return _install


def _bridge_plugin(*names: str) -> str:
    calls = "\n".join(f"    register({n!r}, lambda options, ctx: None)" for n in names)
    return f"from nue_core import hookimpl\n@hookimpl\ndef register_bridges(register):\n{calls}\n"


def _by_name(loaded):
    return {p.name: p for p in loaded.plugins}


@pytest.mark.parametrize("taken", ["conv", "ctc-compress", "q-former", "cnn"])  # name, name, alias, registry.yaml alias
def test_a_first_party_name_stays_first_party(install, taken):
    """'aaa' sorts before every first-party plugin: before the fix it took the name, and the
    first-party plugin was the one marked broken (so the default model lost its bridge)."""
    install("aaa-evil", {"aaa_evil": _bridge_plugin("evil-extra", taken)})
    loaded = load_plugins()
    plugins = _by_name(loaded)
    assert plugins["nue_bridges"].error is None
    assert loaded.registry.get("bridge", taken).plugin == "nue_bridges"
    assert [p.name for p in loaded.broken] == ["aaa_evil"]
    error = plugins["aaa_evil"].error
    assert f"'{taken}'" in error and "'aaa_evil'" in error and "'nue_bridges'" in error and "\n" not in error
    assert "evil-extra" not in loaded.registry.names("bridge")  # the offender is disabled as a whole
    if taken == "ctc-compress":  # the default model's bridge: it still loads, with the first-party bridge
        assert type(load("default", plugins=loaded).bridge).__module__.startswith("nue_bridges")


def test_a_conflict_between_third_party_plugins_disables_the_later_name_whatever_the_discovery_order(install, monkeypatch):
    install("zeta-plugin", {"zeta": _bridge_plugin("shared-name")})
    install("alpha-plugin", {"alpha": _bridge_plugin("shared-name")})
    real = metadata.entry_points
    for reverse in (False, True):
        monkeypatch.setattr(metadata, "entry_points", lambda group=None, **kw: sorted(
            real(group=group, **kw), key=lambda e: e.name, reverse=reverse))
        loaded = load_plugins()
        assert [p.name for p in loaded.broken] == ["zeta"]
        assert "'alpha'" in _by_name(loaded)["zeta"].error
        assert loaded.registry.get("bridge", "shared-name").plugin == "alpha"


def test_system_exit_or_base_exception_at_import_or_in_a_hook_is_a_broken_plugin(install):
    install("exits", {
        "exit_at_import": "import sys\nsys.exit(0)\n",
        "exit_in_hook": ("import sys\nfrom nue_core import hookimpl\n"
                         "@hookimpl\ndef register_bridges(register):\n    sys.exit(3)\n"),
        "base_at_import": "class Odd(BaseException):\n    pass\nraise Odd('not an Exception')\n",
    })
    loaded = load_plugins()
    plugins = _by_name(loaded)
    assert sorted(p.name for p in loaded.broken) == ["base_at_import", "exit_at_import", "exit_in_hook"]
    assert "SystemExit" in plugins["exit_at_import"].error and "SystemExit: 3" in plugins["exit_in_hook"].error
    assert "Odd: not an Exception" in plugins["base_at_import"].error
    assert {"nue_hf", "nue_bridges", "nue_fbank"} <= {p.name for p in loaded.plugins if not p.error}


def test_ctrl_c_during_a_plugin_import_still_stops_the_program(install):
    install("interrupts", {"ctrl_c": "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        load_plugins()


class _Bad:
    """A plugin whose one registration is ``register(*args, **kwargs)``."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    @hookimpl
    def register_bridges(self, register):
        register("fine-one", _explode, options=Opts)
        register(*self.args, **self.kwargs)


BAD_REGISTRATIONS = {
    "options=42": (("odd", _explode), {"options": 42}),
    "options a plain class": (("odd", _explode), {"options": dict}),
    "factory not callable": (("odd", "not callable"), {}),
    "empty name": (("", _explode), {}),
    "name not a str": ((42, _explode), {}),
    "name with a space": (("two words", _explode), {}),
    "aliases a bare str": (("odd", _explode), {"aliases": "toy"}),
    "alias not a str": (("odd", _explode), {"aliases": (None,)}),
    "description not a str": (("odd", _explode), {"description": 3}),
    "shared_defaults not a mapping": (("odd", _explode), {"shared_defaults": ["freeze"]}),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRATIONS))
def test_an_invalid_registration_disables_that_plugin_with_one_line(case):
    import importlib

    args, kwargs = BAD_REGISTRATIONS[case]
    loaded = load_plugins([("nue_bridges", importlib.import_module("nue_bridges.plugin")), ("bad", _Bad(*args, **kwargs))],
                          registry_files=[])
    (broken,) = loaded.broken
    assert broken.name == "bad" and "\n" not in broken.error and "register_bridges" in broken.error
    assert "fine-one" not in loaded.registry.names("bridge")
    assert "conv" in loaded.registry.names("bridge")


class _LoaderPlugin:
    def __init__(self, name, detect, load):
        self.loader = (name, detect, load)

    @hookimpl
    def register_model_loaders(self, register):
        register(*self.loader)


def _tiny_model(folder, **_):
    return compose(tiny_config()).eval()


def _raises(*_args, **_kwargs):
    raise RuntimeError("cannot parse this")


def test_a_loader_whose_detect_raises_is_skipped_in_one_line_and_the_others_get_their_turn(tmp_path, caplog):
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "custom.layout").write_text("x")
    (tmp_path / "unknown").mkdir()
    loaded = load_plugins([("aaa_loader", _LoaderPlugin("flaky", _raises, _raises)),
                           ("custom", _LoaderPlugin("custom", lambda f: (f / "custom.layout").exists(), _tiny_model))],
                          registry_files=[])
    with caplog.at_level(logging.WARNING):
        model = load(tmp_path / "custom", plugins=loaded)
    assert model.is_trained
    (line,) = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert "aaa_loader" in line and "cannot parse this" in line and str(tmp_path / "custom") in line and "\n" not in line
    with pytest.raises(CheckpointError, match="not a model folder"):  # a folder no loader knows
        load(tmp_path / "unknown", plugins=loaded)


def test_a_loader_gets_the_plugin_set_its_caller_chose_and_the_caller_keywords(tmp_path):
    seen = {}

    def remember(folder, *, plugins, **kwargs):
        seen.update(plugins=plugins, **kwargs)
        return compose(tiny_config(), plugins=plugins).eval()

    import importlib

    first_party = [(name, importlib.import_module(f"{name}.plugin")) for name in ("nue_bridges", "nue_hf")]
    loaded = load_plugins([*first_party, ("custom", _LoaderPlugin("custom", lambda f: True, remember))])
    load(tmp_path, plugins=loaded, dtype="bfloat16")
    assert seen["plugins"] is loaded and seen["dtype"] == "bfloat16"


@pytest.mark.parametrize("loader", [_raises, lambda folder, **kw: "not a model"])
def test_a_loader_that_fails_on_a_folder_it_claimed_is_a_checkpoint_error_naming_it(tmp_path, loader):
    loaded = load_plugins([("custom", _LoaderPlugin("custom", lambda f: True, loader))], registry_files=[])
    with pytest.raises(CheckpointError) as err:
        load(tmp_path, plugins=loaded)
    assert "'custom'" in str(err.value) and str(tmp_path) in str(err.value)
