"""`nue evaluate`: jiwer-consistent scores after normalisation, results and summary files, speed."""

import json

import jiwer
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from nue_core.checkpoint import save_model
from nue_core.cli import _register_verbs, app
from nue_core.cli.evaluate import summarize
from nue_core.composer import compose
from nue_core.inference import TranscriptionResult
from nue_core.metrics import normalize_en, normalize_ja
from tests.conftest import tiny_config

_register_verbs()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = compose(tiny_config())
    with torch.no_grad():
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    save_model(model, root / "model")
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(["One, two!", "three four", "Five."]):
        sf.write(root / f"{i}.wav", (rng.standard_normal(8000 + 2000 * i) * 0.1).astype(np.float32), 16000)
        rows.append({"id": f"u{i}", "audio": f"{i}.wav", "text": text})
    rows.append({"id": "bad", "audio": "missing.wav", "text": "six"})
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_evaluate_writes_results_and_summary_matching_jiwer(setup):
    out = setup / "out"
    res = CliRunner().invoke(app, ["evaluate", str(setup / "model"), str(setup / "test.jsonl"), "--out", str(out),
                                   "--max-new-tokens", "5", "--batch-size", "2"])
    assert res.exit_code == 1  # the missing file fails (scored as empty) ...
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0", "u1", "u2", "bad"]
    assert rows[3]["error"] and "missing.wav" in rows[3]["error"] and rows[3]["hyp"] == ""
    assert summary["language"] == "en" and summary["failed"] == 1 and summary["utterances"] == 4
    refs = [normalize_en(r["ref"]) for r in rows]
    hyps = [normalize_en(r["hyp"]) for r in rows]
    assert summary["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert summary["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert summary["audio_seconds"] == pytest.approx(0.5 + 0.625 + 0.75)
    assert summary["rtf"] > 0


def test_summary_on_fixed_pairs_japanese():
    refs = ["今日は、いい天気です。", "ありがとう"]
    results = [TranscriptionResult("a", "今日はいい天気だ", 2.0, 0.5), TranscriptionResult("b", "ありがと", 1.0, 0.25)]
    summary = summarize(refs, results, "ja", wall_seconds=1.0)
    expected = jiwer.cer([normalize_ja(r) for r in refs], [normalize_ja(r.text) for r in results])
    assert summary["cer"] == pytest.approx(expected) and summary["rtf"] == pytest.approx(0.25)
