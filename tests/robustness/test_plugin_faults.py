"""A plugin that raises at import, registration or build time is reported by name; the rest keep working."""

import os
import subprocess
import sys
import textwrap

import pytest
from pydantic import BaseModel, ConfigDict

from nue_core import hookimpl
from nue_core.composer import compose
from nue_core.errors import ConfigError
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
    """A real installed distribution with two broken entry points: the CLI lists them and still composes."""
    pkg = tmp_path / "site"
    (pkg / "badplugins").mkdir(parents=True)
    (pkg / "badplugins" / "__init__.py").write_text("")
    (pkg / "badplugins" / "import_boom.py").write_text("raise ImportError('needs libfoo.so')\n")
    (pkg / "badplugins" / "register_boom.py").write_text(textwrap.dedent("""
        from nue_core import hookimpl
        @hookimpl
        def register_encoders(register):
            raise ValueError('bad registration')
    """))
    dist = pkg / "badplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nue]\nimport_boom = badplugins.import_boom\nregister_boom = badplugins.register_boom\n")
    env = {**os.environ, "PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    nue = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    listed = subprocess.run([*nue, "plugins"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "import_boom" in listed.stderr and "needs libfoo.so" in listed.stderr
    assert "register_boom" in listed.stderr and "bad registration" in listed.stderr
    composed = subprocess.run([*nue, "compose", "--preset", "tiny"], capture_output=True, text=True, env=env, timeout=300)
    assert composed.returncode == 0, composed.stderr


def test_no_trust_remote_code_anywhere_in_the_package():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = [str(p) for folder in ("nue_core", "plugins") for p in (root / folder).rglob("*.py")
                 if "trust_remote_code=True" in p.read_text(encoding="utf-8")]
    assert offenders == []
    assert get_plugins() is not None
