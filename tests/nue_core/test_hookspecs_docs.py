"""docs/plugins.md lists every hook of nue_core/hookspecs.py: the surface and its guide cannot drift."""

from __future__ import annotations

import inspect
from pathlib import Path

from nue_core import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    """Every function in hookspecs marked as a hook spec."""
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "nue_spec")]  # pluggy's HookspecMarker("nue") sets <project>_spec


def test_hookspecs_are_found() -> None:
    assert {"register_encoders", "register_exporters"} <= set(hook_names())


def test_every_hook_has_a_row_in_the_plugin_guide() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in hook_names() if f"| `{name}(register)` |" not in text]
    assert not missing, f"docs/plugins.md's hook table lacks {missing}"
