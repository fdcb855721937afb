"""The trainer shows its steps through the display it is given (the CLI's rich bar, or plain lines
from the library, which imports no terminal UI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nue_core.train.config import TrainConfig
from nue_core.train.logs import PlainProgress
from nue_core.train.run import train


class Recorder:
    made: list["Recorder"] = []

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.args, self.steps, self.lines, self.open = (total, start, enabled), [], [], False
        Recorder.made.append(self)

    def __enter__(self) -> "Recorder":
        self.open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.open = False

    def update(self, step: int, loss: float, lr: float, audio_rate: float) -> None:
        assert self.open and loss > 0 and lr >= 0 and audio_rate > 0
        self.steps.append(step)

    def print(self, text: str) -> None:
        self.lines.append(text)


@pytest.mark.slow
def test_the_trainer_reports_through_the_display_it_is_given(tone_data, tmp_path: Path) -> None:
    model_yaml, train_manifest, valid_manifest = tone_data
    config = TrainConfig(max_steps=3, warmup_steps=1, batch_seconds=2.5, eval_every=3, save_every=100,
                         eval_max_items=1, report_to=[])
    Recorder.made.clear()
    train(model_yaml, train_manifest, valid_manifest, tmp_path / "run", config, say=lambda *a: None, progress=Recorder)
    (shown,) = Recorder.made
    assert shown.args == (3, 0, True) and shown.steps == [1, 2, 3] and not shown.open
    assert len(shown.lines) == 1 and shown.lines[0].startswith("step 3: valid loss")


def test_the_library_display_prints_messages_as_lines(capsys) -> None:
    with PlainProgress(10, 0, enabled=False) as shown:
        shown.update(1, 0.5, 1e-4, 3.0)
        shown.print("step 1: valid loss 0.500")
    assert capsys.readouterr().out == "step 1: valid loss 0.500\n"


def test_the_cli_bar_draws_steps_and_prints_messages(capsys) -> None:
    from nue_core.cli._train_progress import RichTrainProgress

    bar = RichTrainProgress(4, 1, enabled=True)
    with bar:
        bar.update(2, 1.25, 3e-4, 12.5)
        bar.print("step 2: valid loss 1.000")
    task = bar._progress.tasks[0]
    assert (task.completed, task.total, task.fields["info"]) == (2, 4, "loss 1.250  lr 3.00e-04  12.5 audio-s/s")
    assert "step 2: valid loss 1.000" in capsys.readouterr().out
