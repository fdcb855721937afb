"""``nue plugins``: components, and one line per problem with what to do about it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nue_core import hookimpl
from nue_core.cli import _register_verbs, app
import nue_core.plugins
from nue_core.plugins import load_plugins

TORCHAUDIO = ('torchaudio 2.11.1 is installed but does not load beside torch 2.13.0+cpu (OSError: libc10_cuda.so: '
              'cannot open shared object file); using its pure-Python parts only. Fix: pip install "torchaudio==2.13.*"')


class _Plugin:
    @hookimpl
    def register_encoders(self, register):
        for name in ("extra-a", "extra-b"):
            register(name, lambda o, c: None, description=f"{name} text",
                     unavailable='foo is not installed; pip install "x[foo]"')
        register("plain", lambda o, c: None, description="plain text")


def _listing(plugin_set, monkeypatch):
    """``nue plugins`` run against ``plugin_set`` instead of the installed plugins."""
    monkeypatch.setattr(nue_core.plugins, "get_plugins", lambda: plugin_set)
    _register_verbs()
    return CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "250"})


@pytest.fixture
def listed(monkeypatch):
    plugin_set = load_plugins(plugins=[("needs_foo", _Plugin())], registry_files=[])
    plugin_set.problems = [TORCHAUDIO]
    return _listing(plugin_set, monkeypatch)


def test_unavailable_components_share_one_line_with_the_fix(listed):
    assert listed.exit_code == 0, listed.output
    lines = [x for x in listed.stderr.splitlines() if x.startswith("unavailable:")]
    assert lines == ["unavailable: encoder 'extra-a', encoder 'extra-b': foo is not installed; pip install \"x[foo]\""]
    assert "plain text" in listed.stdout and "plain" not in lines[0]


def test_a_package_that_does_not_load_is_one_warning_line(listed):
    assert [x for x in listed.stderr.splitlines() if "torchaudio" in x] == [f"warning: {TORCHAUDIO}"]


class _Conv:
    """Third party, taking a first-party bridge name."""

    @hookimpl
    def register_bridges(self, register):
        register("conv", lambda o, c: None)


class _Odd:
    """Third party: options that are no options model, and a reason spread over lines."""

    @hookimpl
    def register_bridges(self, register):
        register("odd", lambda o, c: None, options=42)


class _Raises:
    @hookimpl
    def register_encoders(self, register):
        raise ValueError("a message\nover two lines")


class _Multiline:
    @hookimpl
    def register_encoders(self, register):
        register("lines", lambda o, c: None, unavailable="first line\nsecond line")


def test_every_plugin_problem_is_one_line(tmp_path, monkeypatch):
    """A conflict names both plugins; an invalid registration, a multi-line error and a multi-line
    reason stay one line each (before: options=42 crashed the listing itself)."""
    import nue_bridges.plugin

    plugin_set = load_plugins(plugins=[("zz_conv", _Conv()), ("odd", _Odd()), ("raises", _Raises()),
                                       ("multiline", _Multiline()), ("nue_bridges", nue_bridges.plugin)],
                              registry_files=[])
    result = _listing(plugin_set, monkeypatch)
    assert result.exit_code == 0, result.output
    # 'warning: ' lines describe the environment (a torchaudio that does not load beside this
    # torch, with the s3prl extra installed), not these plugins.
    lines = [x for x in result.stderr.splitlines() if not x.startswith("warning: ")]
    broken = {n: next(x for x in lines if x.startswith(f"plugin '{n}' ")) for n in ("zz_conv", "odd", "raises")}
    assert len(lines) == 4, result.stderr
    assert "'conv'" in broken["zz_conv"] and "first-party plugin 'nue_bridges'" in broken["zz_conv"]
    assert "is broken: " in broken["zz_conv"] and "disabled" in broken["zz_conv"]
    assert "options must be a pydantic BaseModel subclass, got 42" in broken["odd"]
    assert "a message over two lines" in broken["raises"]
    assert "unavailable: encoder 'lines': first line second line" in lines
