"""`nue evaluate --timestamps`: word timing scored against the manifest's word times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nue_core
from nue_core.cli import _register_verbs, app
from nue_core.errors import NueError
from tests.conftest import tiny_config

_register_verbs()


def _flat(output: str) -> str:
    """The CLI's output on one line, without the frame rich draws around usage errors."""
    return " ".join(output.replace("│", " ").split())
EXAMPLES = sorted((Path(nue_core.__file__).parent / "default_model" / "examples").glob("*.wav"))
SHIFT = 0.05  # the reference times are the model's own, moved by this much


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Entries whose true words are the default model's words shifted by SHIFT (one entry untimed)."""
    root = tmp_path_factory.mktemp("timed")
    found = nue_core.transcribe(nue_core.load("default"), EXAMPLES, timestamps="word")
    rows = []
    for k, (path, result) in enumerate(zip(EXAMPLES, found)):
        row = {"id": f"u{k}", "audio": str(path), "text": result.text}
        if k > 0:
            row["words"] = [{"word": w.word, "start": w.start + SHIFT, "end": w.end + SHIFT} for w in result.words]
        rows.append(row)
    (root / "timed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "timed.jsonl"


def test_timing_is_scored_on_timed_entries(manifest: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "default", str(manifest), "-o", str(tmp_path), "--timestamps", "--no-progress"])
    assert res.exit_code == 0, res.output
    timing = json.loads((tmp_path / "summary.json").read_text())["timing"]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    timed_words = sum(len(json.loads(line).get("words", [])) for line in manifest.read_text().splitlines())
    assert timing["reference_words"] == timing["matched_words"] == timed_words > 0
    assert timing["mean_abs_start"] == pytest.approx(SHIFT) and timing["mean_start_bias"] == pytest.approx(-SHIFT)
    assert timing["mean_abs_end"] == pytest.approx(SHIFT)
    assert "timing" not in rows[0] and rows[1]["timing"]["matched_words"] == len(rows[1]["words"])
    assert "midpoint in span" in res.output


def test_timestamps_without_word_times_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": str(EXAMPLES[0]), "text": "four"}) + "\n")
    res = CliRunner().invoke(app, ["evaluate", "default", str(tmp_path / "m.jsonl"), "--timestamps"])
    assert res.exit_code == 2 and "gives no word times" in _flat(res.output)


def test_timestamps_on_a_model_without_ctc_head_is_refused(manifest: Path, tmp_path: Path) -> None:
    from nue_core.checkpoint import save_model
    from nue_core.composer import compose

    save_model(compose(tiny_config()), tmp_path / "model")
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path / "model"), str(manifest), "--timestamps", "--no-progress"])
    # main() turns a NueError into one `error:` line and exit status 2; CliRunner hands it back.
    assert isinstance(res.exception, NueError) and "CTC head" in str(res.exception)
