"""Sweeps: expansion into validated cells, and `nue ablate` interrupted then resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nue_core.errors import ConfigError
from nue_core.sweep import Sweep, expand, load_sweep
from tests.nue_core.train.conftest import make_dataset, write_model_yaml

TRAIN = {"max_steps": 2, "eval_every": 2, "save_every": 1, "batch_seconds": 4, "warmup_steps": 0,
         "progress": False, "tensorboard": False, "eval_max_items": 3, "lr": 1e-3}


def _sweep_file(tmp_path: Path, **body) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = write_model_yaml(tmp_path / "model.yaml")
    data = {"train": str(make_dataset(tmp_path / "train", 6, seed=1)), "valid": str(make_dataset(tmp_path / "valid", 2, seed=2)),
            "test": str(make_dataset(tmp_path / "test", 3, seed=3))}
    spec = {"name": "tiny grid", "base": model.name, "train": TRAIN, "data": data, "language": "en", **body}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


GRID = {"axes": {"bridge.name": ["conv", "ctc-compress"], "decoder.lora.r": [0, 4]}}


def test_axes_expand_to_validated_named_cells(tmp_path):
    sweep, root = load_sweep(_sweep_file(tmp_path, axes={**GRID["axes"], "train.lr": [0.01]}))
    cells = expand(sweep, root)
    assert [c.name for c in cells] == [
        "bridge.name=conv,decoder.lora.r=0,train.lr=0.01", "bridge.name=conv,decoder.lora.r=4,train.lr=0.01",
        "bridge.name=ctc-compress,decoder.lora.r=0,train.lr=0.01", "bridge.name=ctc-compress,decoder.lora.r=4,train.lr=0.01"]
    assert cells[2].model_config.bridge.name == "ctc-compress" and cells[3].model_config.decoder.uses_lora()
    assert not cells[0].model_config.decoder.uses_lora() and all(c.train_config.lr == 0.01 for c in cells)


def test_variants_and_errors(tmp_path):
    path = _sweep_file(tmp_path, variants=[{"name": "frozen-gpt", "set": {"decoder.trainable": False}},
                                           {"name": "ctc", "set": {"ctc_weight": 0.3, "bridge.ctc_head": True}}])
    sweep, root = load_sweep(path)
    cells = expand(sweep, root)
    assert [c.name for c in cells] == ["frozen-gpt", "ctc"] and cells[1].model_config.ctc_weight == 0.3
    bad = Sweep.model_validate({**sweep.model_dump(), "variants": [{"name": "x", "set": {"bridge.name": "convv"}}]})
    with pytest.raises(ConfigError, match="cell 'x'.*did you mean 'conv'"):
        expand(bad, root)
    with pytest.raises(ConfigError, match="either 'axes' or 'variants'"):
        load_sweep(_sweep_file(tmp_path / "both", **GRID, variants=[{"name": "a"}]))


@pytest.mark.slow
def test_ablate_cli_resumes_without_rerunning_finished_cells(tmp_path):
    path = _sweep_file(tmp_path, **GRID)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from nue_core.cli import main; main()", "ablate", str(path), "-o", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("cells/*/result.json"))) < 2:
        time.sleep(0.5)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)  # interrupt the sweep in the middle of a later cell
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}
    assert len(finished) >= 2
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("finished earlier: skipped") == len(finished)
    for name, mtime in finished.items():
        assert (out / "cells" / name / "result.json").stat().st_mtime_ns == mtime
    assert len(list(out.glob("cells/*/result.json"))) == 4
    table = (out / "results.md").read_text()
    assert table.count("| bridge.name=") == 4 and "prompt_tokens_per_second" in table
    assert (out / "results.csv").read_text().count("\n") == 5 and (out / "results.png").stat().st_size > 1000


def test_shipped_paper_ablation_grid_expands(tmp_path):
    """recipes/fsdd_digits/ablation.yaml: every cell is a valid config permutation of the recipe model."""
    repo = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((repo / "recipes/fsdd_digits/ablation.yaml").read_text())
    spec["base"] = str(repo / "recipes/fsdd_digits/model.yaml")  # the recipe's data need not exist here
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(spec))
    cells = {c.name: c for c in expand(*load_sweep(path))}
    assert set(cells) == {"ctc-compress", "conv", "no-ctc", "gpt-frozen", "gpt-lora", "hubert", "wav2vec2"}
    assert cells["ctc-compress"].model_config.bridge.name == "ctc-compress" and cells["conv"].model_config.bridge.name == "conv"
    assert cells["gpt-lora"].model_config.decoder.uses_lora() and not cells["gpt-frozen"].model_config.decoder.trainable
    assert cells["no-ctc"].model_config.ctc_weight == 0 and cells["no-ctc"].model_config.decode.ctc_weight == 0
    assert cells["ctc-compress"].model_config.decode.ctc_weight > 0 and cells["wav2vec2"].model_config.encoder.name == "wav2vec2"
    assert cells["hubert"].model_config.encoder.options["config"]["hidden_size"] == 144


def test_bad_plugin_option_in_a_cell_is_caught_at_expand(tmp_path):
    sweep, root = load_sweep(_sweep_file(tmp_path, variants=[{"name": "typo", "set": {"bridge.stridez": [2]}}]))
    with pytest.raises(ConfigError, match="(?s)cell 'typo'.*stridez"):
        expand(sweep, root)
