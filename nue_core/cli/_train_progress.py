"""The progress bar of ``nue train``: steps, loss, learning rate, audio-seconds per second and ETA
on one line (rich). The trainer takes any ``nue_core.train.logs.TrainProgress``; this is the
command line's."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichTrainProgress:
    """A ``TrainProgress`` drawn with rich (main process only: ``enabled``).

    Args:
        total: optimizer steps of the run.
        start: the step it starts from (a resumed run's).
        enabled: draw the bar; messages are printed either way.
    """

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> "RichTrainProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, step: int, loss: float, lr: float, audio_rate: float) -> None:
        info = f"loss {loss:.3f}  lr {lr:.2e}  {audio_rate:.1f} audio-s/s"
        self._progress.update(self._task, completed=step, info=info)

    def print(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)
