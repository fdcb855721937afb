"""Where training reports go: a metrics JSONL file (always), the run's trackers (TensorBoard, W&B,
MLflow ...: ``nue_core.train.tracking``) and a progress display.

The display is whatever the caller passes (``ProgressFactory``): the command line draws a rich bar
(``nue_core.cli._train_progress``); the library itself prints its messages as plain lines, so it
imports no terminal UI.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

if TYPE_CHECKING:
    from nue_core.train.tracking import Trackers

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends ``{"split", "step", ...}`` lines to ``RUN_DIR/metrics.jsonl`` and hands each record
    to the run's trackers.

    A resumed run appends after the lines of the interrupted one; readers keep the last line of
    each (split, step).

    An ``OSError`` (a full disk ...) names the file or folder that could not be written
    (``filename``), so the trainer's message can say which.
    """

    def __init__(self, run_dir: Path, trackers: "Trackers | None" = None) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.run_dir = Path(run_dir)
        self._trackers = trackers
        with _naming(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        with _naming(self.path), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._trackers is not None:
            with _naming(self.run_dir):  # TensorBoard's writer thread re-raises its error here
                self._trackers.log(split, step, values)

    def close(self) -> None:
        if self._trackers is not None:
            with _naming(self.run_dir):
                self._trackers.close()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` with ``path`` as its ``filename`` (a failed write names no file)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def read_metrics(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Metrics of a run by split, one record per step (the last written wins), in step order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}
    by_split: dict[str, dict[int, dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            by_split.setdefault(str(record["split"]), {})[int(record["step"])] = record
        except (ValueError, TypeError, KeyError):
            continue  # blank, or an append cut short (a crash, a full disk): the other lines stand
    return {split: [steps[s] for s in sorted(steps)] for split, steps in by_split.items()}


class TrainProgress(Protocol):
    """What the trainer shows while it runs: a context manager told each step, and its messages."""

    def __enter__(self) -> "TrainProgress": ...

    def __exit__(self, *exc: object) -> None: ...

    def update(self, step: int, loss: float, lr: float, audio_rate: float) -> None:
        """Step ``step`` done: running loss, learning rate, audio-seconds trained per second."""

    def print(self, text: str) -> None:
        """A message (validation results, a stop): a line of its own, whatever the display."""


# (total steps, step to start from, show it: the main process with ``progress`` set) -> a display
ProgressFactory = Callable[[int, int, bool], TrainProgress]


class PlainProgress:
    """The library's display: no bar, each message printed as a line (the CLI passes a rich bar)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: int, loss: float, lr: float, audio_rate: float) -> None:
        return None

    def print(self, text: str) -> None:
        print(text, flush=True)


class MetricsWindow:
    """Running means of the training losses and the audio throughput since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.samples = 0.0
        self.start = time.perf_counter()
        self.rate_hz = 16000

    def add(self, stats: dict[str, float], sample_rate: int) -> None:
        for key in ("loss", "lm_loss", "ctc_loss", "grad_norm"):
            self.sums[key] = self.sums.get(key, 0.0) + stats.get(key, 0.0)
        self.count += 1
        self.samples += stats["samples"]
        self.rate_hz = sample_rate

    def loss(self) -> float:
        return self.sums.get("loss", float("nan")) / max(self.count, 1)

    def rate(self) -> float:
        """Audio seconds trained per wall second (this process)."""
        return self.samples / self.rate_hz / max(time.perf_counter() - self.start, 1e-9)

    def summary(self) -> dict[str, float]:
        means = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        return {**means, "audio_seconds_per_second": self.rate()}
