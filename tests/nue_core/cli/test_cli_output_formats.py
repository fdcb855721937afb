"""`nue transcribe -o FILE`: the format named by the suffix or --format, or a usage error before decoding."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nue_core.inference import TranscriptionResult
from nue_core.inference.writers import FORMATS, infer_format, prepare_destination, write_results

CHOICES = "text | tsv | jsonl | json"


@pytest.mark.parametrize(("name", "fmt", "expected"), [
    ("out.txt", None, "text"), ("out.tsv", None, "tsv"), ("out.jsonl", None, "jsonl"), ("out.JSON", None, "json"),
    ("out", None, "tsv"), ("out.log", "tsv", "tsv"), ("out.json", "text", "text"),  # --format wins
])
def test_format_from_suffix_or_option(name, fmt, expected):
    assert infer_format(Path(name), fmt, default="tsv") == expected


@pytest.mark.parametrize(("name", "fmt"), [("out.srt", None), ("out.vtt", None), ("out.txt", "srt"), (None, "vtt")])
def test_subtitle_formats_are_refused_until_there_are_timestamps(name, fmt):
    with pytest.raises(ValueError, match=f"needs timestamps, which are not available yet; formats: {CHOICES}"):
        infer_format(Path(name) if name else None, fmt)


@pytest.mark.parametrize(("name", "fmt"), [("out.csv", None), (None, "yaml")])
def test_unknown_format_lists_the_formats(name, fmt):
    with pytest.raises(ValueError, match=f"unknown output format .*formats: {CHOICES}"):
        infer_format(Path(name) if name else None, fmt)


def test_json_is_one_document_and_jsonl_one_object_per_line():
    results = [TranscriptionResult("a.wav", "one two", 1.0), TranscriptionResult("b.wav", "", error="b.wav: broken")]
    doc, lines = io.StringIO(), io.StringIO()
    write_results(doc, results, "json")
    write_results(lines, results, "jsonl")
    records = json.loads(doc.getvalue())
    assert [r["source"] for r in records] == ["a.wav", "b.wav"] and [r["index"] for r in records] == [0, 1]
    assert records == [json.loads(line) for line in lines.getvalue().splitlines()]
    assert set(FORMATS) == {"text", "tsv", "jsonl", "json"}


def test_destination_checks(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        prepare_destination(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        prepare_destination(tmp_path / "file" / "out.tsv")
    prepare_destination(tmp_path / "new" / "deeper" / "out.tsv")
    assert (tmp_path / "new" / "deeper").is_dir()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    return path


@pytest.mark.parametrize(("extra", "expected"), [
    (["-o", "out.srt"], "srt needs timestamps"),
    (["-o", "out.vtt"], "vtt needs timestamps"),
    (["-o", "out.csv"], "unknown output format '.csv'"),
    (["--format", "xml"], "unknown output format 'xml'"),
    (["-o", "."], "is a folder"),
])
def test_cli_refuses_before_loading_the_model(extra, expected, wav, tmp_path, monkeypatch, capsys):
    from nue_core.cli import main

    monkeypatch.chdir(tmp_path)
    # The model does not exist: the output error must come first, before minutes of decoding.
    monkeypatch.setattr(sys, "argv", ["nue", "transcribe", str(tmp_path / "no-such-model"), str(wav), *extra])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "Usage: nue transcribe" in err and expected in " ".join(err.split())
    assert not list(tmp_path.glob("out.*"))
