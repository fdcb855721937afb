"""A run folder that already holds a run: refuse, resume or overwrite (only the run's own files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nue_core.errors import ConfigError
from nue_core.train.config import TrainConfig
from nue_core.train.run import train
from nue_core.train.run_folder import RunExistsError, check_run_folder, clear_run_folder


def _fake_run(folder: Path) -> Path:
    """A folder laid out as `nue train` leaves it (contents are placeholders)."""
    (folder / "checkpoints" / "step-00000004").mkdir(parents=True)
    (folder / "final").mkdir()
    (folder / "final" / "nue.yaml").write_text("x")
    (folder / "metrics.jsonl").write_text('{"split": "train", "step": 4, "loss": 1.0}\n')
    (folder / "train.yaml").write_text("lr: 0.001\n")
    (folder / ".best.tmp-abc").mkdir()  # leftover of an interrupted save
    return folder


def test_a_previous_run_is_refused_naming_resume_and_overwrite(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    with pytest.raises(RunExistsError) as refused:
        check_run_folder(run, resume=False, overwrite=False)
    message = str(refused.value)
    assert "--resume" in message and "--overwrite" in message and "\n" not in message
    assert "metrics.jsonl" in message and "checkpoints/" in message
    check_run_folder(run, resume=True, overwrite=False)  # continuing is fine
    check_run_folder(tmp_path / "new", resume=False, overwrite=False)  # so is a new folder
    with pytest.raises(ConfigError, match="not both"):
        check_run_folder(run, resume=True, overwrite=True)


def test_overwrite_clears_only_the_run(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (run / "best").symlink_to(elsewhere, target_is_directory=True)
    check_run_folder(run, resume=False, overwrite=True)
    clear_run_folder(run)
    assert list(run.iterdir()) == []
    assert (elsewhere / "keep.txt").read_text() == "keep"  # a link is removed, never followed


def test_overwrite_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    (run / "data").mkdir()
    with pytest.raises(ConfigError, match=r"files no training run writes \(data, notes.txt\)"):
        check_run_folder(run, resume=False, overwrite=True)
    assert (run / "notes.txt").is_file() and (run / "metrics.jsonl").is_file()


def test_overwrite_refuses_to_delete_the_model_it_trains_from(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="lies inside"):
        check_run_folder(run, resume=False, overwrite=True, model_source=run / "final")
    check_run_folder(run, resume=False, overwrite=True, model_source="tiny")  # a preset name


def test_train_refuses_before_loading_anything(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    # Neither the model nor the manifests exist: the refusal must come first (it costs nothing).
    with pytest.raises(RunExistsError):
        train("no-such-model", tmp_path / "missing.jsonl", None, run, TrainConfig(max_steps=1))
    assert (run / "metrics.jsonl").read_text().count("\n") == 1  # untouched


def test_overwrite_starts_a_clean_run_and_warns_about_warmup(tone_data, tmp_path: Path) -> None:
    model_yaml, train_manifest, _ = tone_data
    config = TrainConfig(max_steps=2, warmup_steps=5, batch_seconds=2.5, log_every=1, eval_every=100,
                         save_every=100, progress=False, tensorboard=False)
    run = tmp_path / "run"
    said: list[str] = []
    train(model_yaml, train_manifest, None, run, config, say=said.append)
    assert any(line.startswith("warning: warmup_steps=5 >= 2 training steps") for line in said)
    with pytest.raises(RunExistsError):
        train(model_yaml, train_manifest, None, run, config, say=said.append)
    train(model_yaml, train_manifest, None, run, config, say=said.append, overwrite=True)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # one run's metrics, not two appended


def test_cli_refuses_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from nue_core.cli import main

    run = _fake_run(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["nue", "train", "tiny", "--train", str(tmp_path / "t.jsonl"), "-o", str(run)])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err
