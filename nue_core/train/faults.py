"""How a run stops on a fault: every rank together, in one line, keeping what is already on disk.

In a multi-process run a rank that stops alone leaves the others waiting forever in a collective
(an all-reduce, a barrier) that never comes, so every stop is first agreed on (``any_rank``).

* A write into the run folder that fails (full disk, quota, permissions) becomes a one-line
  ``RunWriteError`` naming the checkpoint kept (``writing``), and training stops rather than
  carrying on to retry at the next checkpoint: a full disk seldom empties itself, every later write
  (checkpoints, metrics, the best and final models) would fail too, and ``--resume`` continues
  exactly from the checkpoint kept, so stopping costs at most ``save_every`` steps, where carrying
  on could lose everything since that checkpoint and the compute besides.
* An item whose audio turns out unreadable during training (the pre-flight check reads only part
  of each file by default) is left out of its batch under ``skip_bad``, counted and reported at the
  end; a batch with nothing left makes a skipped step (not counted as non-finite). Without
  ``skip_bad`` the run stops with a checkpoint of the steps done and one line naming the manifest
  line, the file and how to go on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from nue_core.errors import NueError
from nue_core.train.checkpointing import RunWriteError, write_failure


class TrainingError(NueError):
    """Training cannot go on (too many non-finite steps, no data); the message says why."""


class RunGuard:
    """Decisions every rank takes together, and writes into the run folder that fail cleanly.

    Args:
        accelerator: the run's ``accelerate.Accelerator``.
        run_dir: the run folder (its latest checkpoint is named when a write fails).
        step: returns the optimizer steps done so far (named in messages).
    """

    def __init__(self, accelerator: Any, run_dir: Path, step: Callable[[], int]) -> None:
        self.acc, self.run_dir, self.step = accelerator, Path(run_dir), step

    def any_rank(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag OR-ed over all ranks (one small all-reduce when there are several)."""
        values = torch.tensor([float(f) for f in flags], device=self.acc.device)
        if self.acc.num_processes > 1:
            values = self.acc.reduce(values, reduction="sum")
        return tuple(bool(v > 0) for v in values.tolist())

    def stop_together(self, error: NueError | None) -> None:
        """Raise ``error`` on every rank when any rank has one (others raise a generic one)."""
        if self.any_rank(error is not None)[0]:
            raise error or TrainingError("another process stopped the run (its message says why)")

    @contextlib.contextmanager
    def writing(self, target: Path | None = None) -> Iterator[None]:
        """An ``OSError`` while writing ``target`` (default: the file the error names) becomes a
        one-line ``RunWriteError`` naming the checkpoint kept; a ``NueError`` passes unchanged."""
        try:
            yield
        except NueError:
            raise
        except OSError as exc:
            where = target or Path(exc.filename or self.run_dir)
            raise write_failure(self.run_dir, where, exc, self.step()) from None

    def write_on_main(self, target: Path, write: Callable[[], Any]) -> Any:
        """``write()`` on the main process (the others wait); when it fails every rank raises."""
        result, failure = None, None
        if self.acc.is_main_process:
            try:
                with self.writing(target):
                    result = write()
            except RunWriteError as exc:
                failure = exc
        self.acc.wait_for_everyone()
        self.stop_together(failure)
        return result
