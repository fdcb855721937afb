"""Checks every JSON-lines manifest format shares: parsing a line, labels, seconds, text, audio paths.

A check that fails raises ``BadLine`` with a message naming the field; the reader turns it into a
``ManifestProblem`` for that ``file:line`` and goes on with the next line.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from nue_core.data.manifest_base import text_problem

# An entry is one flat object (depth 1, 3 with lhotse's nested recording); the bound is far above
# that and far below where json.loads recurses out of stack (it raises RecursionError near depth 1000).
MAX_JSON_DEPTH = 64
# A JSON string (possibly unterminated: it then runs to the end of the line) or one bracket. Strings
# are matched whole so brackets inside them do not count; the pattern never backtracks.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
# Folders whose resolved path is remembered (a corpus rarely has more; the bound keeps memory flat).
_MAX_CACHED_FOLDERS = 100_000


class BadLine(Exception):
    """The current line is unusable; the message names the field."""


def too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit`` (brackets in strings ignored)."""
    if text.count("[") + text.count("{") <= limit:  # the common case, at C speed
        return False
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def parse_object(text: str) -> dict:
    """One line's JSON object; ``BadLine`` for invalid JSON, another value, or absurd nesting."""
    if too_deep(text):
        raise BadLine(f"JSON nested deeper than {MAX_JSON_DEPTH} levels; an entry is one flat object")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise BadLine(f"not valid JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(obj, dict):
        raise BadLine("expected a JSON object")
    return obj


def check_text(value: str, key: str) -> None:
    """``BadLine`` when ``value`` holds a NUL or a lone surrogate (see ``text_problem``)."""
    problem = text_problem(value, f"'{key}'")
    if problem:
        raise BadLine(problem)


def string_field(obj: dict, key: str, required: bool, default: str = "") -> str:
    """A string field (transcript ...): ``default`` when absent and not required."""
    if key not in obj:
        if required:
            raise BadLine(f"'{key}' must be a string")
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise BadLine(f"'{key}' must be a string")
    check_text(value, key)
    return value


def label(obj: dict, key: str, default: str | None) -> str | None:
    """An ``id`` or ``speaker``: a non-empty string or an integer (as written)."""
    if key not in obj:
        return default
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise BadLine(f"'{key}' must be a non-empty string")
    check_text(value, key)
    return value


def seconds(value: object, name: str) -> float:
    """A finite, non-negative number of seconds, else BadLine naming ``name``."""
    message = f"{name} must be a finite, non-negative number of seconds"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BadLine(message)
    try:
        result = float(value)
    except OverflowError:  # an integer beyond float range
        raise BadLine(message) from None
    if not math.isfinite(result) or result < 0:
        raise BadLine(message)
    return result


def optional_seconds(obj: dict, key: str) -> float | None:
    """``seconds`` of ``obj[key]``, or None when the key is absent or null."""
    value = obj.get(key)
    return None if value is None else seconds(value, f"'{key}'")


class PathResolver:
    """Absolute paths of audio files named relative to a base folder (absolute names stay as given).

    Each folder is resolved (symbolic links, ``..``) once and remembered: resolving every path of a
    million-line manifest in full costs a few system calls per path component per line, most of a
    scan's time. The file name itself is joined as written, so a link in the last component is
    opened as the link (the same file).

    Args:
        base: the folder relative names start from (the manifest's folder).
    """

    def __init__(self, base: Path) -> None:
        self.base = str(base)
        # Path objects, not strings: a child path shares its parent's parsed components, which
        # saves about 200 bytes per entry of a large manifest.
        self._folders: dict[str, Path] = {}

    def __call__(self, name: str, key: str) -> Path:
        """The absolute path of ``name``; ``BadLine`` naming ``key`` when it cannot be a path."""
        try:
            head, tail = os.path.split(name)
            if tail in ("", ".", ".."):  # not a file name: resolve the whole, as written
                return Path(os.path.realpath(os.path.join(self.base, name)))
            folder = self._folders.get(head)
            if folder is None:
                folder = Path(os.path.realpath(os.path.join(self.base, head)))
                if len(self._folders) < _MAX_CACHED_FOLDERS:
                    self._folders[head] = folder
            return folder / tail
        except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
            raise BadLine(f"'{key}' is not a usable path ({exc})") from None
