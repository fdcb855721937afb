"""The FSDD digit recipe: data building (split by speaker, 8 -> 16 kHz, transcripts) and a smoke run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "fsdd_digits"
FSDD = Path(os.environ.get("NUE_FSDD", REPO.parent / "shared" / "data" / "fsdd"))

pytestmark = pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")


HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed (apt install espeak-ng)")


def _data_module():
    if str(RECIPE) not in sys.path:  # data.py imports its neighbour synthetic.py
        sys.path.insert(0, str(RECIPE))
    spec = importlib.util.spec_from_file_location("fsdd_recipe_data", RECIPE / "data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_split_never_tests_on_a_training_voice() -> None:
    data = _data_module()
    splits = data.split_recordings(data.list_recordings(FSDD), "yweweler")
    speakers = {name: {r.speaker for r in rs} for name, rs in splits.items()}
    assert speakers["test"] == {"yweweler"}
    assert "yweweler" not in speakers["train"] | speakers["valid"]
    train_files = {r.path for r in splits["train"]}
    assert not train_files & {r.path for r in splits["valid"]}


def test_built_utterances_are_16k_with_digit_transcripts(tmp_path: Path) -> None:
    data = _data_module()
    manifests = data.build_all(FSDD, tmp_path, "theo", {"train": 6, "valid": 2, "test": 3})
    rows = [json.loads(l) for l in manifests["test"].read_text().splitlines()]
    assert len(rows) == 3 and all(r["speaker"] == "theo" for r in rows)
    for row in rows:
        words = row["text"].split()
        assert 1 <= len(words) <= 5 and set(words) <= set(data.WORDS)
        info = sf.info(str(manifests["test"].parent / row["audio"]))
        assert info.samplerate == 16000 and info.channels == 1
        assert 0.3 * len(words) < info.duration < 1.2 * len(words) + 1.0
    tokenizer = data.train_tokenizer(tmp_path / "tok")
    sys.path.insert(0, str(REPO / "plugins"))
    from nue_hf.tokenizers import SentencePieceTokenizer

    tok = SentencePieceTokenizer(tokenizer)
    assert tok.decode(tok.encode("three seven one")) == "three seven one"
    assert len(tok.encode("three seven one")) == 3  # one token per word


@needs_espeak
def test_synthetic_voices_are_fsdd_style_recordings_and_join_the_training_manifest(tmp_path: Path) -> None:
    data = _data_module()
    manifests = data.build_all(FSDD, tmp_path, "theo", {"train": 4, "valid": 2, "test": 2}, synthetic=6, voices=2)
    voices = data.list_recordings(tmp_path / "data" / "voices")
    assert len(voices) == 2 * 10 and len({r.speaker for r in voices}) == 2
    assert sorted({r.digit for r in voices}) == list(range(10))
    for r in voices[:3]:
        wave = data.read_8k(r.path)  # mono 8 kHz like FSDD, or it raises
        assert 0.1 < len(wave) / 8000 < 1.5 and np.abs(wave).max() > 0.05
    rows = [json.loads(l) for l in manifests["train"].read_text().splitlines()]
    assert manifests["train"].name == "train+synthetic.jsonl" and len(rows) == 4 + 6
    assert {r["speaker"] for r in rows[4:]} <= {r.speaker for r in voices}
    assert "theo" not in {r["speaker"] for r in rows}
    for row in rows:
        assert (manifests["train"].parent / row["audio"]).is_file()


def test_missing_espeak_gives_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _data_module()
    import synthetic

    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
    with pytest.raises(synthetic.SynthesizerMissing, match="apt install espeak-ng.*--synthetic-count 0"):
        synthetic.espeak()


@pytest.mark.slow
def test_recipe_smoke_run(tmp_path: Path) -> None:
    cmd = [sys.executable, str(RECIPE / "run.py"), "--fsdd", str(FSDD), "--work", str(tmp_path),
           "--train-count", "24", "--valid-count", "4", "--test-count", "4",
           *(["--synthetic-count", "8", "--synthetic-voices", "2"] if HAS_ESPEAK else ["--synthetic-count", "0"]),
           "--set", "max_steps=3", "--set", "eval_every=3", "--set", "batch_seconds=12", "--set", "progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "held-out speaker yweweler: WER" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["items"] == 4 and results["steps"] == 3
