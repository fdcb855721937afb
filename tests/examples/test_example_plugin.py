"""The example third-party plugin installs with pip, loads from its entry point and conforms.

pip builds and installs the example (its wheel, dist-info and entry point) into a temporary
``--target`` folder put first on ``sys.path``, instead of into the environment itself: the venv
stays untouched, so concurrent test runs cannot race on install/uninstall and the rest of the
suite never sees an ``example`` entry point.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from nue_core.plugins import PluginSet, load_plugins
from nue_core.testing import check_plugin

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nue-plugin-example"
DISTRIBUTION = "nue-plugin-example"
PACKAGE = "nue_plugin_example"

pytestmark = pytest.mark.slow


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)


def _forget_example() -> None:
    """Drop the example's modules and the import caches, so the next import sees the disk."""
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _build_isolation_args() -> list[str]:
    """``--no-build-isolation`` when hatchling (the example's build backend) is importable here.

    Without it pip needs an index to fetch hatchling into a throw-away build environment; that
    does not touch this environment but needs the network (or a local mirror), so say so.
    """
    if importlib.util.find_spec("hatchling") is not None:
        return ["--no-build-isolation"]
    warnings.warn(
        "hatchling is not installed in this environment: the example plugin is built with pip's "
        "build isolation, which fetches hatchling from the package index",
        stacklevel=2,
    )
    return []


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the example once into a temporary folder on ``sys.path``; yields that folder."""
    target = tmp_path_factory.mktemp("site-packages")
    result = _pip("install", "--no-deps", *_build_isolation_args(), "-q", "--target", str(target), str(EXAMPLE))
    if result.returncode != 0:
        pytest.fail(f"pip install {EXAMPLE} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    sys.path.insert(0, str(target))  # first: wins over any copy installed in the environment
    _forget_example()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        _forget_example()


@pytest.fixture(scope="module")
def plugin_set(installed_example: Path) -> PluginSet:
    """A fresh plugin set from the installed entry points (the process-wide one is left alone)."""
    return load_plugins()


def test_example_plugin_loads_from_its_entry_point(plugin_set: PluginSet, installed_example: Path) -> None:
    plugins = {p.name: p for p in plugin_set.plugins}
    assert "example" in plugins, f"entry point 'example' not found; loaded: {sorted(plugins)}"
    info = plugins["example"]
    assert info.error is None
    assert (info.distribution, info.version, info.hooks) == (DISTRIBUTION, "0.1.0", ["register_bridges"])
    entry = plugin_set.registry.get("bridge", "mean-pool")
    assert entry.plugin == "example"
    assert plugin_set.registry.get("bridge", "avgpool") is entry
    # imported from what pip installed, not from the source tree
    assert installed_example in Path(importlib.import_module(PACKAGE).__file__ or "").parents


def test_example_plugin_passes_the_conformance_kit(plugin_set: PluginSet) -> None:
    built = check_plugin("example", {"bridge:mean-pool": {"pool": 3}}, plugin_set)
    bridge = built["bridge:mean-pool"]
    assert (bridge.pool, bridge.in_dim, bridge.out_dim) == (3, 16, 24)


def test_example_plugin_own_tests_pass(installed_example: Path) -> None:
    # the example's suite lies outside testpaths; run it here so it cannot rot unnoticed
    path = os.pathsep.join(filter(None, [str(installed_example), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": path},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
