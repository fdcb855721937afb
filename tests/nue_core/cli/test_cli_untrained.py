"""`nue transcribe` / `nue evaluate` with a model that was never trained: one warning line, as a user sees it."""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from nue_core.cli import _register_verbs, app
from nue_core.inference.transcriber import UNTRAINED_WARNING

_register_verbs()


def _wav(folder, name="a.wav", samples=8000):
    path = folder / name
    sf.write(path, (np.random.default_rng(0).standard_normal(samples) * 0.1).astype(np.float32), 16000)
    return path


def test_transcribe_preset_prints_one_warning_line(tmp_path):
    """A subprocess, so stderr is exactly what a terminal shows (pytest's log capture is not in the way)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "from nue_core.cli import main; main()", "transcribe", "tiny", str(_wav(tmp_path)),
           "--max-new-tokens", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert [line for line in lines if "untrained" in line] == [UNTRAINED_WARNING]  # the message alone on its line
    assert "Warning:" not in res.stderr and "warn(" not in res.stderr  # no warnings-module file:line + source line
    assert len(res.stdout.splitlines()) == 1  # the transcript itself still comes out


def test_evaluate_preset_warns_once(tmp_path, caplog):
    wavs = [_wav(tmp_path, f"{i}.wav", 6000 + 2000 * i) for i in range(3)]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(w), "text": "one two"}) + "\n" for w in wavs))
    with caplog.at_level("WARNING"):
        res = CliRunner().invoke(app, ["evaluate", "tiny", str(manifest), "--max-new-tokens", "2", "--batch-size", "1",
                                       "--no-progress"])
    assert res.exit_code == 0, res.output
    assert [r.getMessage() for r in caplog.records if "untrained" in r.getMessage()] == [UNTRAINED_WARNING]
