"""``nue plugins``: components, and one line per problem with what to do about it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nue_core import hookimpl
from nue_core.cli import _register_verbs, app
from nue_core.plugins import load_plugins, set_plugins

TORCHAUDIO = ('torchaudio 2.11.1 is installed but does not load beside torch 2.13.0+cpu (OSError: libc10_cuda.so: '
              'cannot open shared object file); using its pure-Python parts only. Fix: pip install "torchaudio==2.13.*"')


class _Plugin:
    @hookimpl
    def register_encoders(self, register):
        for name in ("extra-a", "extra-b"):
            register(name, lambda o, c: None, description=f"{name} text",
                     unavailable='foo is not installed; pip install "x[foo]"')
        register("plain", lambda o, c: None, description="plain text")


@pytest.fixture
def listed():
    plugin_set = load_plugins(plugins=[("needs_foo", _Plugin())], registry_files=[])
    plugin_set.problems = [TORCHAUDIO]
    set_plugins(plugin_set)
    _register_verbs()
    try:
        yield CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "250"})
    finally:
        set_plugins(None)


def test_unavailable_components_share_one_line_with_the_fix(listed):
    assert listed.exit_code == 0, listed.output
    lines = [x for x in listed.stderr.splitlines() if x.startswith("unavailable:")]
    assert lines == ["unavailable: encoder 'extra-a', encoder 'extra-b': foo is not installed; pip install \"x[foo]\""]
    assert "plain text" in listed.stdout and "plain" not in lines[0]


def test_a_package_that_does_not_load_is_one_warning_line(listed):
    assert [x for x in listed.stderr.splitlines() if "torchaudio" in x] == [f"warning: {TORCHAUDIO}"]
