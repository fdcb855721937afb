"""Compatibility layer between s3prl 0.4.x and current torch / torchaudio.

s3prl 0.4.18 was written against torchaudio < 2.9. Two APIs it touches at import time were
removed in torchaudio 2.9:

* ``torchaudio.set_audio_backend`` (called at module level by several upstreams' audio helpers,
  e.g. ``s3prl.upstream.byol_s``): a no-op shim, since audio I/O never goes through s3prl here.
* ``torchaudio.sox_effects`` (imported by ``s3prl.upstream.mos_prediction``): a stub module whose
  functions raise ``NotImplementedError`` when called, so importing ``s3prl.hub`` works and only
  the one upstream that applies sox effects fails, with a clear message, if it is actually used.

The shims are installed on the imported ``torchaudio`` module object, only when the attribute is
missing, before any s3prl module is imported; nothing in site-packages is modified.

torchaudio itself: s3prl's hub imports it (its pure-Python parts suffice, which
``nue_core.torchaudio_guard`` provides when the native library does not load). The native
``hubert_*`` / ``wav2vec2_*`` path needs no torchaudio at all, so only the hub path is refused,
with the reason and the fix, when torchaudio cannot be imported in any form.

This module also owns the guard that s3prl never unpickles code: ``weights_only_loads()`` makes
every ``torch.load`` inside it use ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from typing import Any, Iterator

import torch

from nue_core.errors import ConfigError
from nue_core.torchaudio_guard import guard_torchaudio, matching_torchaudio_command

INSTALL_HINT = 'pip install "nue-asr[s3prl]"'
_SHIMMED = False


def s3prl_missing_reason(import_it: bool = True) -> str | None:
    """None when s3prl is available, else a one-line reason with the install hint.

    Args:
        import_it: import s3prl to be sure (slow: it imports tensorboard); False only looks for it.
    """
    if not import_it:
        found = importlib.util.find_spec("s3prl") is not None
        return None if found else f"s3prl is not installed; {INSTALL_HINT}"
    try:
        importlib.import_module("s3prl")
    except Exception as exc:  # ImportError, or a broken torchaudio below it
        return f"s3prl is not importable ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    return None


def require_s3prl() -> None:
    """Raise a ConfigError with the install hint when s3prl is unavailable; else install the shims."""
    reason = s3prl_missing_reason()
    if reason is not None:
        raise ConfigError(f"the s3prl encoders are unavailable: {reason}")
    install_torchaudio_shims()


def hub_unavailable_reason() -> str | None:
    """None when s3prl's hub can be imported as far as torchaudio goes, else one line with the fix."""
    state = guard_torchaudio()
    if state.importable:
        return None
    if state.problem:
        return state.problem
    return f"torchaudio is not installed; {matching_torchaudio_command(torch.__version__)}"


def require_hub(upstream: str) -> None:
    """Raise a ConfigError naming the upstream when the hub path cannot run here (torchaudio)."""
    reason = hub_unavailable_reason()
    if reason is not None:
        raise ConfigError(f"s3prl upstream '{upstream}' is built by s3prl's hub, which needs torchaudio "
                          f"(only hubert_*/wav2vec2_* upstreams are built without it): {reason}")


def _sox_unavailable(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError(
        "torchaudio.sox_effects was removed in torchaudio 2.9; this s3prl upstream needs an older torchaudio"
    )


def install_torchaudio_shims() -> None:
    """Add the torchaudio APIs s3prl imports but torchaudio >= 2.9 lacks (idempotent)."""
    global _SHIMMED
    if _SHIMMED or not guard_torchaudio().importable:
        return  # without torchaudio only the native path runs, and it imports no module needing these
    import torchaudio

    if not hasattr(torchaudio, "set_audio_backend"):
        # s3prl only selects a backend for file I/O, which nue-asr does itself.
        torchaudio.set_audio_backend = lambda backend=None: None  # type: ignore[attr-defined]
    if "torchaudio.sox_effects" not in sys.modules:
        try:
            importlib.import_module("torchaudio.sox_effects")
        except ImportError:
            stub = types.ModuleType("torchaudio.sox_effects")
            stub.__doc__ = "nue_s3prl stub: sox effects were removed in torchaudio 2.9"
            stub.apply_effects_tensor = _sox_unavailable  # type: ignore[attr-defined]
            stub.apply_effects_file = _sox_unavailable  # type: ignore[attr-defined]
            sys.modules["torchaudio.sox_effects"] = stub
            torchaudio.sox_effects = stub  # type: ignore[attr-defined]
    _SHIMMED = True


def import_s3prl(module: str) -> types.ModuleType:
    """Import an s3prl module (e.g. ``s3prl.hub``) after the shims are in place."""
    require_s3prl()
    return importlib.import_module(module)


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Inside, ``torch.load`` refuses pickled code: ``weights_only=True`` is forced on every call.

    s3prl's upstream loaders call ``torch.load`` without ``weights_only``; torch >= 2.6 defaults to
    True, but an environment variable (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) or an explicit False
    would re-enable arbitrary unpickling. Not thread-safe: it swaps ``torch.load`` for the duration.
    """
    original = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = original  # type: ignore[assignment]
