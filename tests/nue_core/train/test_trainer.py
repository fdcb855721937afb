"""Trainer behaviour on a tiny model: non-finite steps, schedules, the CLI end to end, plotting."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nue_core.errors import ConfigError
from nue_core.train.config import TrainConfig
from nue_core.train.data import UtteranceSet
from nue_core.train.optim import lr_factor
from nue_core.train.run import build_training_model
from nue_core.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[3]


def _trainer(tone_data, tmp_path: Path, **settings) -> Trainer:
    model_yaml, train, _ = tone_data
    config = TrainConfig(**{"max_steps": 6, "batch_seconds": 2.5, "warmup_steps": 1, "eval_every": 100,
                            "save_every": 100, "progress": False, "tensorboard": False, **settings})
    model = build_training_model(model_yaml, seed=0)
    data, _ = UtteranceSet.from_manifest(train, model.sample_rate, 16.0, skip_bad=False)
    return Trainer(model, config, data, None, tmp_path / "run")


def _poison(trainer: Trainer, bad_steps: set[int]) -> None:
    """Make the loss NaN at the given (0-based) steps."""
    forward = trainer.model.forward

    def poisoned(*args, **kwargs):
        out = forward(*args, **kwargs)
        if trainer.state.step in bad_steps:
            out.loss = out.loss * float("nan")
        return out

    trainer.model.forward = poisoned


def test_schedule_warms_up_then_decays() -> None:
    assert lr_factor(0, 10, 100, "linear", 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "linear", 0.0) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, "linear", 0.0) == pytest.approx(0.0)
    assert lr_factor(55, 10, 100, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(50, 10, 100, "constant", 0.0) == 1.0


def test_train_config_rejects_typos_and_cpu_fp16() -> None:
    with pytest.raises(ConfigError, match="lrr: unknown key"):
        TrainConfig.from_dict({"lrr": 1e-3})
    from nue_core.train.trainer import make_accelerator

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            make_accelerator(TrainConfig(precision="fp16"))


def test_only_trainable_parameters_are_optimised(tone_data, tmp_path: Path) -> None:
    model_yaml, train, _ = tone_data
    import yaml

    config = yaml.safe_load(model_yaml.read_text())
    config["encoder"]["trainable"] = False
    frozen_yaml = tmp_path / "frozen.yaml"
    frozen_yaml.write_text(yaml.safe_dump(config))
    trainer = _trainer((frozen_yaml, train, None), tmp_path, max_steps=2)
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in optimised for p in trainer.raw_model.encoder.parameters())
    before = {n: p.detach().clone() for n, p in trainer.raw_model.encoder.named_parameters()}
    trainer.fit()
    assert all(torch.equal(before[n], p) for n, p in trainer.raw_model.encoder.named_parameters())


@pytest.mark.slow
def test_cli_end_to_end_with_bad_entries_and_plot(tone_data, tmp_path: Path) -> None:
    model_yaml, train, valid = tone_data
    with open(train, "a", encoding="utf-8") as handle:  # one bad line at the end (line 13)
        handle.write(json.dumps({"audio": "missing.wav", "text": "low"}) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    out = tmp_path / "run"
    cmd = base + ["train", str(model_yaml), "--train", str(train), "--valid", str(valid), "--out", str(out),
                  "--set", "max_steps=4", "--set", "batch_seconds=2.5", "--set", "eval_every=2",
                  "--set", "model.ctc_weight=0.3", "--set", "progress=false"]
    stopped = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 2
    assert f"{train}:13: audio file not found" in stopped.stderr and "--skip-bad" in stopped.stderr
    done = subprocess.run(cmd + ["--skip-bad"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 utterances" in done.stdout and "1 skipped" in done.stdout
    assert "finished at step 4" in done.stdout and "valid CER" in done.stdout
    assert (out / "best" / "nue.yaml").is_file() and (out / "final" / "model.safetensors").is_file()
    assert list((out / "tensorboard").iterdir())
    valid_rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"valid"' in l]
    assert [r["step"] for r in valid_rows] == [2, 4] and all(0 <= r["cer"] for r in valid_rows)
    # continue training from the saved model folder (its weights, its architecture)
    more = subprocess.run(base + ["train", str(out / "final"), "--train", str(valid), "--out", str(tmp_path / "more"),
                                  "--set", "max_steps=1", "--set", "batch_seconds=2.5", "--set", "progress=false"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stdout + more.stderr
    plotted = subprocess.run(base + ["plot", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
