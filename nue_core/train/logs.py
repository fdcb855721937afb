"""Where training reports go: a metrics JSONL file, TensorBoard events and a rich progress bar."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends ``{"split", "step", ...}`` lines to ``RUN_DIR/metrics.jsonl`` (and TensorBoard).

    A resumed run appends after the lines of the interrupted one; readers keep the last line of
    each (split, step).

    An ``OSError`` (a full disk ...) names the file or folder that could not be written
    (``filename``), so the trainer's message can say which.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.events = Path(run_dir) / "tensorboard"
        self._writer = None
        with _naming(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            with _naming(self.events):
                self._writer = SummaryWriter(str(self.events))

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        with _naming(self.path), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            with _naming(self.events):  # the event writer's thread re-raises its error here
                for key, value in values.items():
                    if isinstance(value, (int, float)):
                        self._writer.add_scalar(f"{split}/{key}", value, step)
                self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            with _naming(self.events):
                self._writer.close()


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


class ProgressBar:
    """Steps, loss, learning rate, audio-seconds per second and ETA on one line (main process only)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> "ProgressBar":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, step: int, loss: float, lr: float, audio_rate: float) -> None:
        info = f"loss {loss:.3f}  lr {lr:.2e}  {audio_rate:.1f} audio-s/s"
        self._progress.update(self._task, completed=step, info=info)

    def print(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)


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
