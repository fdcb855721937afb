"""Hugging Face hub ids as model sources, against a huggingface_hub cache laid out by hand (offline)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import nue_core
from nue_core.checkpoint import load, save_model
from nue_core.errors import CheckpointError
from nue_core.generation import GenerationConfig
from nue_core.hub import HUB_PATTERNS, is_hub_id
from tests.conftest import make_audio

NUE_REPO = "nue-test/tiny-asr"
RELEASED_REPO = "rinna-test/nue-asr-tiny"


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay ``folder`` out the way huggingface_hub's cache holds a downloaded model repository::

        models--org--name/blobs/<sha256>                       file contents
        models--org--name/snapshots/<commit>/<path> -> ../../blobs/<sha256>
        models--org--name/refs/main                            the commit (no newline)

    (see the ``hf_hub_download`` docstring in huggingface_hub/file_download.py). Returns the snapshot.
    """
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A hub cache holding a tiny nue model folder and a tiny released-layout folder."""
    from tests.plugins.nue_hf.released_fixture import make_released_folder

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    model = nue_core.compose("tiny").eval()
    with torch.no_grad():  # a random tiny LM rarely says eos: sharpen it so outputs vary
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    model.is_trained = True  # stands for a trained model pushed to the hub
    put_in_hub_cache(root / "hub", NUE_REPO, save_model(model, root / "src" / "nue"))
    released = make_released_folder(root / "src" / "released")
    put_in_hub_cache(root / "hub", RELEASED_REPO, released)
    return {"hub": root / "hub", "model": model, "released": released}


@pytest.fixture
def offline_cache(cache, monkeypatch):
    """huggingface_hub reads its settings at import: point the module constants (and the env) at the cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache["hub"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache["hub"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize("text,hub", [
    ("org/name", True), ("rinna/nue-asr", True), ("Org_1/name.v2", True),
    ("./org/name", False), ("../org/name", False), ("/abs/name", False), ("~/name", False),
    ("runs/exp1/final", False), ("tiny", False), ("org/", False), ("org/na..me", False), ("org--x/name", False),
])
def test_hub_id_or_local_path(text, hub):
    assert is_hub_id(text) is hub


def test_existing_local_path_is_never_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").write_text("a file, not a folder")
    assert not is_hub_id("org/name")
    with pytest.raises(CheckpointError, match="a file, not a model folder"):
        load("org/name")


def test_fetch_patterns_take_no_pickle_and_no_code():
    from huggingface_hub.utils import filter_repo_objects

    files = ["nue.yaml", "model.safetensors", "tokenizer/spiece.model", "tokenizer/tokenizer_config.json",
             "config.json", "merges.txt", "pytorch_model.bin", "model.pt", "optimizer.pkl", "modeling_nue.py",
             "model.ckpt", "setup.sh"]
    kept = set(filter_repo_objects(files, allow_patterns=list(HUB_PATTERNS)))
    assert kept == {"nue.yaml", "model.safetensors", "tokenizer/spiece.model", "tokenizer/tokenizer_config.json",
                    "config.json", "merges.txt"}


def _logits(model):
    wave, lens = make_audio([0.5, 0.3], seed=3)
    with torch.no_grad():
        return model(wave, lens, model.target_ids(["abc", "de"])).logits


def test_cached_nue_model_folder_loads_offline(offline_cache):
    model = nue_core.load(NUE_REPO)
    assert model.is_trained
    assert torch.equal(_logits(model), _logits(offline_cache["model"]))


def test_cached_released_folder_loads_offline(offline_cache):
    from nue_hf.released import load_released

    model = load(RELEASED_REPO)
    assert model.is_trained  # a released checkpoint: no "untrained" warning
    reference = load_released(offline_cache["released"])
    wave, lens = make_audio([0.8, 0.5], seed=1)
    gen = GenerationConfig(max_new_tokens=6)
    assert model.generate(wave, lens, gen) == reference.generate(wave, lens, gen)


def test_missing_repository_offline_is_one_clear_line(offline_cache):
    with pytest.raises(CheckpointError) as info:
        load("nobody/missing-model")
    message = str(info.value)
    assert "\n" not in message
    assert "'nobody/missing-model'" in message and "not in the Hugging Face cache" in message
    assert str(offline_cache["hub"]) in message and "hf download nobody/missing-model" in message


def test_local_looking_sources_never_reach_the_hub(offline_cache, monkeypatch, tmp_path):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError(f"sent to the hub: {args}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    for source in ["./nue-test/tiny-asr", "runs/exp1/final", Path(NUE_REPO), str(tmp_path / "gone")]:
        with pytest.raises(CheckpointError, match="no such model folder"):
            load(source)


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from nue_core.cli import main

    monkeypatch.setattr(sys, "argv", ["nue", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_transcribes_with_a_cached_hub_id(offline_cache, monkeypatch, capsys, tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32), 16000)
    code, out, err = _run_cli(monkeypatch, capsys, "transcribe", NUE_REPO, str(wav), "--max-new-tokens", "3",
                              "--no-progress")
    assert code == 0, err
    expected = nue_core.transcribe(offline_cache["model"], [wav], generation=GenerationConfig(max_new_tokens=3))[0].text
    assert out.splitlines() == [" ".join(expected.split())]

    code, out, err = _run_cli(monkeypatch, capsys, "transcribe", "nobody/missing-model", str(wav))
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ") and "not in the Hugging Face cache" in line
