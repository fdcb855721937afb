"""An installed torchaudio whose native library does not load must not break any import.

The failure this guards against: ``pip install -e ".[s3prl]"`` pulls PyPI's torchaudio, built
against another torch (e.g. torchaudio 2.11, linked to CUDA libraries, beside a CPU torch 2.13).
``import torchaudio`` then raises ``OSError`` while loading ``_torchaudio.so``. transformers
decides that torchaudio is available from ``importlib.util.find_spec`` alone and imports it in
``transformers.audio_utils``, which every model module imports (``modeling_hubert`` ->
``modeling_layers`` -> ``processing_utils`` -> ``audio_utils``), so that one library would take
down every transformers model, i.e. the whole ``nue_hf`` plugin.

``guard_torchaudio()`` settles the question once per process, before transformers is imported
(``nue_core.plugins.load_plugins`` and ``nue_hf/__init__`` call it):

1. torchaudio not installed, or it imports: nothing to do.
2. Its native library fails to load: import it again with that library treated as absent, the
   state torchaudio supports itself (its ``_load_lib`` returns False when the file is missing,
   e.g. in pex deployments). Its pure-Python parts (functional, transforms, compliance.kaldi),
   all that transformers and s3prl use here, then work; only ops of the C++ extension fail,
   when called, with torchaudio's own message.
3. If even that fails: ``sys.modules["torchaudio"] = None``. Python then answers
   ``find_spec("torchaudio")`` with None and ``import torchaudio`` with ModuleNotFoundError, so
   transformers (and any library that checks before importing) sees it as not installed.

Step 3 is documented import-system behaviour and needs nothing of transformers' internals, which
is why it is the last resort rather than patching transformers' ``is_torchaudio_available``
(cached, re-exported under several names, renamed between releases). Step 2 uses one torchaudio
internal (``torchaudio._extension.utils._load_lib``); where that is gone, step 3 applies.

Either way the problem is kept as one line (what is wrong, what nue-asr does, the fix) that
``nue plugins`` prints.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Sequence

_NATIVE_LOADER = "torchaudio._extension.utils"


@dataclass(frozen=True)
class TorchaudioState:
    """What ``guard_torchaudio`` found.

    Attributes:
        importable: ``import torchaudio`` works now (possibly without its native library).
        problem: one line saying what is wrong and how to fix it; None when nothing is.
    """

    importable: bool
    problem: str | None = None


_STATE: TorchaudioState | None = None


def guard_torchaudio() -> TorchaudioState:
    """Make ``import torchaudio`` safe for the rest of the process (idempotent; see the module doc).

    Returns:
        TorchaudioState: whether torchaudio imports now, and the one-line problem if any.
    """
    global _STATE
    if _STATE is None:
        _STATE = _settle()
    return _STATE


def _settle() -> TorchaudioState:
    loaded = sys.modules.get("torchaudio", False)
    if loaded is None:  # blocked on purpose (a test, or the user): leave it so
        return TorchaudioState(importable=False)
    if isinstance(loaded, ModuleType) or importlib.util.find_spec("torchaudio") is None:
        return TorchaudioState(importable=isinstance(loaded, ModuleType))
    try:
        importlib.import_module("torchaudio")
        return TorchaudioState(importable=True)
    except Exception as exc:  # OSError from the .so, or ImportError raised by torchaudio itself
        error: BaseException = exc
    _forget_torchaudio()
    try:
        _import_without_native_library()
        return TorchaudioState(True, problem_line(error, "using its pure-Python parts only"))
    except Exception:  # any failure here ends in step 3
        _forget_torchaudio()
        sys.modules["torchaudio"] = None  # type: ignore[assignment]
        return TorchaudioState(False, problem_line(error, "running without torchaudio"))


def _forget_torchaudio() -> None:
    """Drop torchaudio and the submodules a failed import left behind, so the next import starts clean."""
    for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
        del sys.modules[name]


def _library_absent(lib: str) -> bool:
    """torchaudio's ``_load_lib`` answer when the library file is missing: 'not loaded', no error."""
    return False


class _WithoutNativeLibrary(importlib.abc.MetaPathFinder):
    """Finds ``torchaudio._extension.utils`` as usual and makes its ``_load_lib`` report the library absent."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _NATIVE_LOADER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if hasattr(module, "_load_lib"):  # absent in a future torchaudio: the import fails, step 3
                module._load_lib = _library_absent  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _import_without_native_library() -> None:
    finder = _WithoutNativeLibrary()
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("torchaudio")
    finally:
        sys.meta_path.remove(finder)


def _root_cause(error: BaseException) -> str:
    """The innermost exception's first line: it names the missing library, the outer one only the .so."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:200]}"


def matching_torchaudio_command(torch_version: str) -> str:
    """The pip command for the torchaudio that pairs with ``torch_version``.

    torchaudio's major.minor equals torch's (since torch 2.0); a local build tag (``+cpu``,
    ``+cu128``) names PyTorch's wheel index for that build.
    """
    release, _, local = torch_version.partition("+")
    major_minor = ".".join(release.split(".")[:2])
    index = f" --index-url https://download.pytorch.org/whl/{local}" if local else ""
    return f'pip install "torchaudio=={major_minor}.*"{index}'


def problem_line(error: BaseException, consequence: str) -> str:
    """One line: the installed torchaudio, why it does not load, what nue-asr does, and the fix."""
    try:
        version = importlib.metadata.version("torchaudio")
    except importlib.metadata.PackageNotFoundError:
        version = "(unknown version)"
    import torch

    return (f"torchaudio {version} is installed but does not load beside torch {torch.__version__} "
            f"({_root_cause(error)}); {consequence}. Fix: {matching_torchaudio_command(torch.__version__)}")
