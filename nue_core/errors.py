"""Errors with messages meant for the user: each names the file, key or component at fault.

The command line turns them into one line and an exit status (``docs/inference.md``, "Exit
status"): an ``OutputError`` met while writing 74, every other ``NueError`` 2. ``reading`` and
``writing`` turn the ``OSError`` (and decoding errors) of a block that reads or writes one known
file into these, naming the file.
"""

from __future__ import annotations

import errno as errno_codes
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class NueError(Exception):
    """Base class of every error nue-asr raises on purpose."""


class ConfigError(NueError, ValueError):
    """A configuration or options value is invalid."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(NueError):
    """Two plugins registered the same name."""


class PluginError(NueError):
    """A plugin's ``register`` call is invalid (a bad name, a factory that is not callable ...).

    Raised by the ``register`` callback a hook receives; the plugin manager then disables that
    plugin with this message (``PluginSet.broken``), whether or not the plugin catches it.
    """


class CheckpointError(NueError):
    """A model folder or weights file cannot be read."""


# Each errno's meaning in plain words; the rest get the system's own words.
_ERRNO_WORDS = {
    errno_codes.ENOSPC: "no space left on device",
    errno_codes.EDQUOT: "disk quota exceeded",
    errno_codes.EACCES: "permission denied",
    errno_codes.EPERM: "operation not permitted",
    errno_codes.EROFS: "read-only file system",
    errno_codes.ENOTDIR: "a part of the path is a file, not a folder",
    errno_codes.EISDIR: "is a folder",
    errno_codes.ENOENT: "no such file or folder",
}
# What to do about a write that failed for these reasons.
_WRITE_ADVICE = {
    errno_codes.ENOSPC: "free some space and run again",
    errno_codes.EDQUOT: "free some space and run again",
    errno_codes.EACCES: "choose a location you can write to",
    errno_codes.EPERM: "choose a location you can write to",
    errno_codes.EROFS: "choose a location you can write to",
}


def errno_meaning(exc: OSError) -> str:
    """``exc.errno`` in a few words: 'no space left on device', 'permission denied' ..."""
    if exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)


class InputError(NueError):
    """An input file given by the user (manifest, config, run folder) cannot be read."""

    @classmethod
    def from_exception(cls, path: Path | str, exc: BaseException) -> InputError:
        """``'PATH: <what went wrong>; <what to do>'`` for an error met while reading ``path``.

        Args:
            exc: an ``OSError``, ``UnicodeDecodeError`` or ``RecursionError`` (others: their text).
        """
        if isinstance(exc, UnicodeDecodeError):
            byte = exc.object[exc.start : exc.start + 1].hex()
            return cls(f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); save it as UTF-8")
        if isinstance(exc, RecursionError):
            return cls(f"{path}: nested too deeply to read; flatten the nested values")
        if isinstance(exc, OSError):
            return cls(f"{exc.filename or path}: cannot read ({errno_meaning(exc)})")
        return cls(f"{path}: cannot read ({type(exc).__name__}: {exc})")


class OutputError(NueError, OSError):
    """An output file or folder cannot be written (full disk, read-only, no permission ...).

    Also an ``OSError``, so code that caught the raw error before keeps working.

    Attributes:
        path: the file or folder that could not be written.
        errno: the operating system's error number (``errno.ENOSPC`` ...), or None.
    """

    def __init__(self, message: str, path: Path | str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno

    def __str__(self) -> str:  # OSError would prefix "[Errno N]" when errno is set
        return str(self.args[0])

    @classmethod
    def from_oserror(cls, path: Path | str, exc: OSError, note: str = "") -> OutputError:
        """``'PATH: cannot write (<meaning>; <advice>)[; note]'`` for an ``OSError`` met writing ``path``."""
        reason = errno_meaning(exc)
        if exc.errno in _WRITE_ADVICE:
            reason += f"; {_WRITE_ADVICE[exc.errno]}"
        return cls(f"{path}: cannot write ({reason})" + (f"; {note}" if note else ""), path, exc.errno)


@contextmanager
def reading(path: Path | str) -> Iterator[None]:
    """Turn an ``OSError``, ``UnicodeDecodeError`` or ``RecursionError`` raised inside into an
    ``InputError`` naming ``path`` (the file the block reads); ``NueError``s pass unchanged."""
    try:
        yield
    except NueError:
        raise
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError.from_exception(path, exc) from exc


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into an ``OutputError`` naming the file it names, else
    ``path`` (what the block writes); ``NueError``s pass unchanged."""
    try:
        yield
    except NueError:
        raise
    except OSError as exc:
        raise OutputError.from_oserror(exc.filename or path, exc) from exc


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` as one line: whitespace (newlines, tabs) folded to single spaces, and at most
    ``limit`` characters (cut with "...") when given. Messages of torch, numpy, json and plugins
    may span lines; a report line and a one-line-per-input output must not."""
    folded = " ".join(text.split())
    return folded if limit is None or len(folded) <= limit else folded[: limit - 3] + "..."
