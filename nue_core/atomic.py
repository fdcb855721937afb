"""Write a folder atomically: into a temporary sibling, renamed into place once complete.

A crash, a full disk or Ctrl-C midway leaves the previous folder whole and no temporary behind;
only a process killed outright (SIGKILL, power loss) can leave one, named by the rule below so a
later run can recognise and delete it (``nue_core.train.run_folder``). Every writer of a folder
(model folders, adapters, training checkpoints, the released layout, the default model) goes
through ``atomic_folder``; this is the one home of the naming rule.

Names, for a folder NAME:
    ``.NAME.tmp-XXXX``  the folder being written (``temp_prefix``; also a folder being deleted)
    ``.NAME.old-PID``   the previous NAME, moved aside for the instant of the swap (``aside_name``)
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMP, _ASIDE = "tmp", "old"


def temp_prefix(name: str) -> str:
    """Name prefix of the temporary sibling a folder (or file) ``name`` is written into first."""
    return f".{name}.{_TEMP}-"


def aside_name(name: str) -> str:
    """Name an existing folder ``name`` is moved to while its replacement is renamed into place."""
    return f".{name}.{_ASIDE}-{os.getpid()}"


def leftover_pattern(names: str) -> re.Pattern[str]:
    """A regex matching exactly the leftovers (temporary or moved-aside) of folders named ``names``.

    Args:
        names: a regular expression for the folder names saved in one place (``best|final``).

    Returns:
        A compiled pattern to ``fullmatch`` against entry names (never a user's ``.notes.tmp-1``).
    """
    return re.compile(rf"\.(?:{names})\.(?:{_TEMP}|{_ASIDE})-[^/]+")


@contextmanager
def atomic_folder(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final``; on success it replaces ``final``.

    Args:
        final: the folder to write (its parent is created; an existing one is replaced whole).

    Yields:
        The temporary folder to write into. When the block raises anything (including
        ``KeyboardInterrupt``), it is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), dir=final.parent))
    try:
        yield tmp
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is swapped out first and removed after."""
    _apply_umask(src)
    old = None
    if dst.exists():
        old = dst.with_name(aside_name(dst.name))
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)  # put the previous folder back: never leave no ``dst`` at all
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard_folder(folder: Path) -> None:
    """Delete ``folder``, renamed to a leftover name first, so it is complete or gone, never half."""
    try:
        aside = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), dir=folder.parent))
    except OSError:
        aside = folder  # not even room for a folder name: delete in place
    else:
        try:
            os.replace(folder, aside)  # onto the empty folder mkdtemp made
        except OSError:
            aside.rmdir()  # the rename failed: drop the empty name, delete in place
            aside = folder
    shutil.rmtree(aside, ignore_errors=True)


def _apply_umask(folder: Path) -> None:
    """Give a finished temporary folder the permissions a plain mkdir/open would have.

    mkdtemp creates 0700 folders and safetensors writes 0600 files; a saved folder is meant to be
    shared (and shipped inside the package), so the usual umask-derived modes are restored.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
