"""Each start of a run records what it ran with: configs, versions, machine, git state; one new
file per start (resumes included), written atomically, the earlier ones untouched."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nue_core.config import ModelConfig
from nue_core.train import provenance
from nue_core.train.config import TrainConfig
from nue_core.train.provenance import NOT_GIT, PROVENANCE_DIR, git_state, record_start
from nue_core.train.run import train
from nue_core.train.run_folder import check_run_folder, clear_run_folder, remove_stale_temporaries
from tests.conftest import tiny_config

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder: Path, *args: str) -> str:
    cmd = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _configs() -> tuple[TrainConfig, ModelConfig]:
    return TrainConfig(lr=3e-4, report_to=[]), ModelConfig.from_dict(tiny_config())


def test_each_start_adds_a_file_and_keeps_the_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no git checkout here
    config, model_config = _configs()
    first = record_start(tmp_path / "run", config, model_config, resumed=False)
    text = first.read_text()
    second = record_start(tmp_path / "run", config.model_copy(update={"lr": 1e-4}), model_config, resumed=True)
    assert [first.name, second.name] == ["start-001.yaml", "start-002.yaml"]
    assert first.read_text() == text  # never overwritten
    record = yaml.safe_load(text)
    assert record["resumed"] is False and yaml.safe_load(second.read_text())["resumed"] is True
    assert record["train_config"] == config.model_dump(mode="json")
    assert ModelConfig.from_dict(record["model_config"]) == model_config  # exact enough to rebuild the model
    versions = record["versions"]
    for name in ("python", "torch", "transformers", "accelerate", "peft", "nue-asr"):
        assert versions[name] and versions[name] != "not installed", name
    assert versions["plugins"]["nue_hf"].startswith("nue-asr ")
    machine = record["machine"]
    assert machine["cpu_cores"] >= 1 and isinstance(machine["gpus"], list) and "cpu_flags" in machine
    assert record["git"] == NOT_GIT
    assert sorted(p.name for p in (tmp_path / "run" / PROVENANCE_DIR).iterdir()) == ["start-001.yaml", "start-002.yaml"]


@needs_git
def test_git_state_names_commit_branch_and_changed_files(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "exp")
    (repo / "recipe.py").write_text("print(1)\n")
    _git(repo, "add", "recipe.py")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "recipe.py").write_text("print(2)\n")
    (repo / "new.yaml").write_text("x: 1\n")
    state = git_state(repo)
    assert state["commit"] == _git(repo, "rev-parse", "HEAD") and len(state["commit"]) == 40
    assert state["branch"] == "exp" and sorted(state["dirty"]) == ["new.yaml", "recipe.py"]
    assert git_state(tmp_path) == NOT_GIT


def test_without_git_the_record_says_so(tmp_path: Path, monkeypatch) -> None:
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert git_state(tmp_path) == f"{NOT_GIT} (git is not installed)"


def test_an_interrupted_write_leaves_nothing_a_new_run_keeps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / PROVENANCE_DIR).mkdir(parents=True)
    (run / PROVENANCE_DIR / ".start-002.yaml.tmp-4242").write_text("half")
    (run / PROVENANCE_DIR / "start-001.yaml").write_text("kept")
    assert remove_stale_temporaries(run) == [f"{PROVENANCE_DIR}/.start-002.yaml.tmp-4242"]
    assert [p.name for p in (run / PROVENANCE_DIR).iterdir()] == ["start-001.yaml"]
    check_run_folder(run, resume=False, overwrite=True)  # a run's own folder: overwrite may clear it
    clear_run_folder(run)
    assert not (run / PROVENANCE_DIR).exists()


@pytest.mark.slow
def test_a_run_and_its_resume_each_record_their_start(tone_data, tmp_path: Path) -> None:
    model_yaml, train_manifest, _ = tone_data
    run = tmp_path / "run"
    settings = dict(warmup_steps=1, batch_seconds=2.5, eval_every=100, save_every=1, progress=False, report_to=[])
    train(model_yaml, train_manifest, None, run, TrainConfig(max_steps=1, **settings), say=lambda *a: None)
    train(model_yaml, train_manifest, None, run, TrainConfig(max_steps=2, **settings), resume=True, say=lambda *a: None)
    first, second = (yaml.safe_load((run / PROVENANCE_DIR / f"start-00{i}.yaml").read_text()) for i in (1, 2))
    assert (first["resumed"], second["resumed"]) == (False, True)
    assert (first["train_config"]["max_steps"], second["train_config"]["max_steps"]) == (1, 2)
    assert first["model_config"] == yaml.safe_load((run / "model.yaml").read_text())
    assert first["processes"] == 1
