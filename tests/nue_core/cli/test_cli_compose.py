"""`nue compose` and `nue plugins` as a user types them."""

import os
import subprocess
import sys

import pytest
import yaml

from nue_core.checkpoint import load

NUE = [sys.executable, "-c", "from nue_core.cli import main; main()"]


def run_nue(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*NUE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_newcomer_compose_works_offline_with_defaults():
    res = run_nue("compose", "--encoder", "hubert", "--decoder", "gpt-neox")
    assert res.returncode == 0, res.stderr
    assert "encoder" in res.stdout and "hubert" in res.stdout and "conv" in res.stdout
    assert "3.6" in res.stdout or "3.7" in res.stdout  # billions of parameters, built on meta
    assert "tokenizer not at hand" in res.stdout  # no tokenizer files offline
    assert "LLM tokens per second of audio" in res.stdout


def test_typo_gets_did_you_mean_and_exit_2():
    res = run_nue("compose", "--encoder", "hubret")
    assert res.returncode == 2
    assert "did you mean 'hubert'" in res.stderr and "Installed:" in res.stderr and "wav2vec2" in res.stderr


def test_compose_preset_saves_a_loadable_folder(tmp_path):
    out = tmp_path / "model"
    res = run_nue("compose", "--preset", "tiny", "--set", "decoder.lora.r=4", "-o", str(out), "--yaml")
    assert res.returncode == 0, res.stderr
    saved = yaml.safe_load((out / "nue.yaml").read_text())
    assert saved["decoder"]["lora"]["r"] == 4 and "config" in saved["encoder"]
    model = load(out)
    assert model.config.decoder.lora.r == 4


def test_bad_override_is_reported():
    res = run_nue("compose", "--preset", "tiny", "--set", "bridge.stridez=[2]")
    assert res.returncode == 2 and "stridez" in res.stderr


def test_plugins_lists_components_and_versions():
    res = run_nue("plugins")
    assert res.returncode == 0, res.stderr
    for word in ("nue_hf", "nue_bridges", "hubert", "wav2vec2", "conv", "qformer", "ctc-compress",
                 "gpt-neox", "llama", "hf-causal-lm", "0.1.0"):
        assert word in res.stdout
