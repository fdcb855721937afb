"""Where training reports go: a metrics JSONL file, TensorBoard events and a rich progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends ``{"split", "step", ...}`` lines to ``RUN_DIR/metrics.jsonl`` (and TensorBoard).

    A resumed run appends after the lines of the interrupted one; readers keep the last line of
    each (split, step).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{split}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Metrics of a run by split, one record per step (the last written wins), in step order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return {}
    by_split: dict[str, dict[int, dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            by_split.setdefault(record["split"], {})[int(record["step"])] = record
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
