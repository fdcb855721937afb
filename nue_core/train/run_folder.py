"""What a training run folder holds, and the rules for starting a run in one.

A new run into a folder that already holds a run would otherwise start over silently and append
to the old ``metrics.jsonl`` (so ``nue plot`` would draw two runs as one). So: continue it
(``resume``), clear it (``overwrite``), or refuse. ``overwrite`` deletes only a run's own files,
and refuses a folder that holds anything else: pointing ``--output`` at the wrong folder by
mistake must never delete the user's data.

Folders are saved atomically (``nue_core.atomic``): written as ``.NAME.tmp-XXXX`` and renamed to
NAME; an existing NAME is first moved aside to ``.NAME.old-PID``.
A process killed in between (SIGKILL, out of memory, power loss) leaves one of those behind, in the
run folder (best/, final/) or in checkpoints/ (step-NNNNNNNN/); ``remove_stale_temporaries`` deletes
them when the next run starts, and nothing else.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nue_core.atomic import leftover_pattern
from nue_core.errors import ConfigError
from nue_core.train.provenance import PROVENANCE_DIR
from nue_core.train.tracking import WANDB_DIR

# Entries whose presence means a run already made progress here (results that would be mixed).
RUN_MARKERS = ("checkpoints", "metrics.jsonl", "best", "final", "tensorboard")
# Everything a run writes into its folder (``curves.png``: ``nue plot``'s default output;
# ``provenance/``: what each start ran with; ``wandb/``: that tracker's local files).
RUN_ENTRIES = (*RUN_MARKERS, "train.yaml", "model.yaml", "curves.png", PROVENANCE_DIR, WANDB_DIR)
CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step-"  # a checkpoint is CHECKPOINTS/step-00000100
# Leftovers by the naming rule of ``nue_core.atomic``, for the folders saved atomically in each
# place only (never a user's ``.notes.tmp-1`` or a file of a subfolder).
_RUN_LEFTOVER = leftover_pattern("best|final")
_CHECKPOINT_LEFTOVER = leftover_pattern(re.escape(STEP_PREFIX) + r"\d+")
_PROVENANCE_LEFTOVER = leftover_pattern(r"start-\d+\.yaml")  # files are written through a temporary too


class RunExistsError(ConfigError):
    """The run folder already holds a run, and neither resume nor overwrite was asked for."""


def previous_run(run_dir: Path) -> list[str]:
    """Names of the entries in ``run_dir`` that show a run was already made there (empty: none)."""
    return [f"{name}/" if (run_dir / name).is_dir() else name for name in RUN_MARKERS if (run_dir / name).exists()]


def foreign_entries(run_dir: Path) -> list[str]:
    """Names in ``run_dir`` that no training run writes (sorted)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if not _owned(p.name))


def check_run_folder(run_dir: Path, resume: bool, overwrite: bool, model_source: str | Path | None = None) -> None:
    """Refuse to start a run in ``run_dir`` when that would mix or lose runs.

    Args:
        run_dir: the run folder (may not exist yet).
        resume: continue the run there (allowed whatever the folder holds).
        overwrite: the previous run's files may be deleted (see ``clear_run_folder``).
        model_source: the model to train; with ``overwrite`` it must not lie inside ``run_dir``.

    Raises:
        RunExistsError: a run is there and neither ``resume`` nor ``overwrite`` was given.
        ConfigError: both were given, or ``overwrite`` would delete something that is not the run's.
    """
    if resume and overwrite:
        raise ConfigError("give --resume (continue the run) or --overwrite (start over), not both")
    if resume or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file; --output needs a folder for the run")
    found = previous_run(run_dir)
    if found and not overwrite:
        raise RunExistsError(f"{run_dir} already holds a training run ({', '.join(found)}): continue it with "
                             "--resume, or start over with --overwrite (deletes that run's files)")
    if not overwrite:
        return
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError(f"{run_dir} holds files no training run writes ({shown}); --overwrite clears only "
                          "run folders: move them or give another --output")
    if model_source is not None and Path(model_source).exists() and _inside(Path(model_source), run_dir):
        raise ConfigError(f"the model {model_source} lies inside {run_dir}, which --overwrite would clear; "
                          "copy it elsewhere first")


def stale_temporaries(run_dir: Path) -> list[Path]:
    """Leftovers of interrupted saves in ``run_dir`` and its checkpoints folder (see the module doc)."""
    found: list[Path] = []
    for folder, pattern in ((run_dir, _RUN_LEFTOVER), (run_dir / CHECKPOINTS, _CHECKPOINT_LEFTOVER),
                            (run_dir / PROVENANCE_DIR, _PROVENANCE_LEFTOVER)):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))
    return found


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Delete the leftovers of saves a crash interrupted (call on the main process before training).

    Only one run writes into a run folder at a time, so at start every temporary there is stale.

    Returns:
        What was removed, relative to ``run_dir`` (``checkpoints/.step-00000600.tmp-k2j3``).
    """
    removed = []
    for path in stale_temporaries(Path(run_dir)):
        _remove(path)
        removed.append(str(path.relative_to(run_dir)))
    return removed


def clear_run_folder(run_dir: Path) -> None:
    """Delete a previous run's files from ``run_dir`` (call after ``check_run_folder`` with overwrite)."""
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if _owned(path.name):
            _remove(path)


def _remove(path: Path) -> None:
    # A symlink is removed itself: never follow it into a folder elsewhere.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _owned(name: str) -> bool:
    """Whether a training run writes an entry of this name into its folder."""
    return name in RUN_ENTRIES or _RUN_LEFTOVER.fullmatch(name) is not None


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
