"""Checkpoints: no pickle, SIGKILL + --resume ends with the weights of an uninterrupted run, SIGTERM saves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nue_core.checkpoint import read_state_dict
from nue_core.train.checkpointing import list_checkpoints

REPO = Path(__file__).resolve().parents[3]
SETTINGS = ["max_steps=8", "batch_seconds=2.5", "save_every=3", "eval_every=4", "log_every=1",
            "warmup_steps=2", "lr=3e-3", "progress=false", "tensorboard=false",
            "augment.speed=[0.9,1.1]", "augment.gain_db=[-3,3]"]


def _command(data: tuple[Path, Path, Path], out: Path, *extra: str) -> list[str]:
    model, train, valid = data
    cmd = [sys.executable, "-c", "from nue_core.cli import main; main()", "train", str(model),
           "--train", str(train), "--valid", str(valid), "--out", str(out)]
    for setting in SETTINGS:
        cmd += ["--set", setting]
    return cmd + list(extra)


def _env() -> dict[str, str]:
    # One thread: identical float reductions in both runs, and fair to a shared CI machine.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(int(p.name.split("-")[1]) >= step for p in list_checkpoints(out)):
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before checkpoint {step}: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    pytest.fail(f"no checkpoint {step} within {timeout} s")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(folder / "model.safetensors")


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tone_data, tmp_path: Path) -> None:
    _run(_command(tone_data, tmp_path / "straight"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(tone_data, killed), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(proc, killed, 3)
    proc.send_signal(signal.SIGKILL)  # between checkpoints: steps after 3 are lost
    proc.wait()
    assert not (killed / "final").exists()
    done = _run(_command(tone_data, killed, "--resume"))
    assert "resumed from step" in done.stdout
    a, b = _weights(tmp_path / "straight" / "final"), _weights(killed / "final")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)
    assert any((a[n] != _weights(killed / "checkpoints" / "step-00000006" / "model")[n]).any() for n in a)


@pytest.mark.slow
def test_checkpoint_holds_no_pickle(tone_data, tmp_path: Path) -> None:
    cmd = _command(tone_data, tmp_path / "run")
    cmd[cmd.index("max_steps=8")] = "max_steps=3"
    _run(cmd)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and "tensorboard" not in p.parts]
    assert files and {p.suffix for p in files} <= {".safetensors", ".json", ".yaml", ".jsonl"}
    for path in files:
        assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    names = {p.name for p in checkpoint.iterdir()}
    assert {"model", "optimizer.safetensors", "optimizer.json", "scheduler.json", "rng.safetensors",
            "trainer_state.json"} <= names


@pytest.mark.slow
def test_resume_with_another_model_names_the_tensor(tone_data, tmp_path: Path) -> None:
    """A checkpoint of one model resumed with another: one line naming a tensor and its shapes
    (the same check a model folder gets), exit 2, no traceback; not mistaken for a damaged
    checkpoint (an older one would not fit either)."""
    import yaml

    model, train, valid = tone_data
    out = tmp_path / "run"
    _run(_command(tone_data, out, "--set", "max_steps=3"))
    other = yaml.safe_load(model.read_text(encoding="utf-8"))
    other["decoder"]["config"]["hidden_size"] *= 2
    other_yaml = tmp_path / "other.yaml"
    other_yaml.write_text(yaml.safe_dump(other), encoding="utf-8")
    cmd = _command((other_yaml, train, valid), out, "--set", "max_steps=6", "--resume")
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "has shape" in done.stderr and "the model's is" in done.stderr, done.stderr
    assert "same MODEL_CONFIG" in done.stderr and "damaged" not in done.stdout + done.stderr
