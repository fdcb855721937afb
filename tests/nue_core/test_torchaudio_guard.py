"""An installed torchaudio whose native library does not load must not take nue_hf down.

Each case runs in a fresh interpreter with a fake ``torchaudio`` first on ``sys.path`` (it shadows
a real one), because the guard, transformers' availability cache and ``sys.modules`` are
per-process state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nue_core.torchaudio_guard import _root_cause, matching_torchaudio_command

ROOT = Path(__file__).resolve().parents[2]
# Like torchaudio 2.11's: the package imports _extension, which loads the .so through _load_lib.
LAYOUT = {
    "__init__.py": "from . import _extension\n__version__ = '2.11.1'\n",
    "_extension/__init__.py": "from .utils import _load_lib\n_IS_TORCHAUDIO_EXT_AVAILABLE = _load_lib('_torchaudio')\n",
    "_extension/utils.py": textwrap.dedent("""
        def _load_lib(lib):
            try:
                raise OSError('libc10_cuda.so: cannot open shared object file: No such file or directory')
            except OSError as exc:
                raise OSError(f'Could not load this library: /site-packages/torchaudio/lib/{lib}.so') from exc
    """),
}
# A torchaudio that fails before any part the guard knows of: only blocking it is left.
OPAQUE = {"__init__.py": "raise OSError('undefined symbol: _ZN3c1017RegisterOperators')\n"}


def fake_torchaudio(root: Path, files: dict[str, str]) -> Path:
    """A torchaudio 2.11.1 package (with dist-info, so its version is known) under ``root``."""
    for rel, text in files.items():
        path = root / "torchaudio" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    dist = root / "torchaudio-2.11.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n", encoding="utf-8")
    return root


def run(code: str, fake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)]), "COLUMNS": "250",
           "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


def test_fix_names_the_torchaudio_matching_torch() -> None:
    assert matching_torchaudio_command("2.13.0+cpu") == (
        'pip install "torchaudio==2.13.*" --index-url https://download.pytorch.org/whl/cpu')
    assert matching_torchaudio_command("2.13.1+cu128").endswith("/whl/cu128")
    assert matching_torchaudio_command("2.5.0") == 'pip install "torchaudio==2.5.*"'


def test_root_cause_names_the_missing_library() -> None:
    try:
        try:
            raise OSError("libc10_cuda.so: cannot open shared object file")
        except OSError as inner:
            raise OSError("Could not load this library: _torchaudio.so") from inner
    except OSError as exc:
        assert _root_cause(exc) == "OSError: libc10_cuda.so: cannot open shared object file"


@pytest.mark.slow
def test_nue_plugins_keeps_nue_hf_and_says_what_to_install(tmp_path: Path) -> None:
    fake = fake_torchaudio(tmp_path, LAYOUT)
    listed = run("from nue_core.cli import main; main()", fake, "plugins")
    assert listed.returncode == 0, listed.stderr
    assert "broken" not in listed.stdout + listed.stderr
    for name in ("hubert", "wav2vec2", "gpt-neox", "llama", "fbank-transformer"):
        assert f"│ {name} " in listed.stdout
    (line,) = [x for x in listed.stderr.splitlines() if "torchaudio" in x]
    assert line.startswith("warning: torchaudio 2.11.1 is installed but does not load beside torch ")
    assert "libc10_cuda.so" in line and "using its pure-Python parts only" in line
    assert 'Fix: pip install "torchaudio==' in line


@pytest.mark.slow
def test_unloadable_torchaudio_is_hidden_from_transformers_and_nue_hf_builds(tmp_path: Path) -> None:
    fake = fake_torchaudio(tmp_path, OPAQUE)
    code = textwrap.dedent("""
        import importlib.util, sys
        from nue_core.composer import compose
        from nue_core.plugins import load_plugins
        from tests.conftest import tiny_config

        plugins = load_plugins()
        assert not plugins.broken, plugins.broken
        assert {"hubert", "wav2vec2"} <= set(plugins.registry.names("encoder")), plugins.registry.names("encoder")
        assert {"gpt-neox", "llama"} <= set(plugins.registry.names("decoder"))
        (problem,) = plugins.problems
        assert "undefined symbol" in problem and "running without torchaudio" in problem, problem
        assert importlib.util.find_spec("torchaudio") is None  # what transformers asks
        from transformers.utils import is_torchaudio_available
        assert not is_torchaudio_available()
        compose(tiny_config(), plugins=plugins)  # transformers' hubert and gpt-neox modules load
        print("ok")
    """)
    result = run(code, fake)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
