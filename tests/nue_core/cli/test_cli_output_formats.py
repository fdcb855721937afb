"""`nue transcribe -o FILE`: the format named by the suffix or --format, or a usage error before decoding;
every format parseable whatever the ids, paths and transcripts hold; files written atomically."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.errors import OutputError
from nue_core.inference import TranscriptionResult
from nue_core.inference import writers
from nue_core.inference.writers import (
    FORMATS, LineFile, ResultWriter, check_destination, infer_format, prepare_destination, write_atomic, write_results,
)

CHOICES = "text | tsv | jsonl | json | srt | vtt"


@pytest.mark.parametrize(("name", "fmt", "expected"), [
    ("out.txt", None, "text"), ("out.tsv", None, "tsv"), ("out.jsonl", None, "jsonl"), ("out.JSON", None, "json"),
    ("out", None, "tsv"), ("out.log", "tsv", "tsv"), ("out.json", "text", "text"),  # --format wins
    ("out.srt", None, "srt"), ("out.VTT", None, "vtt"), ("out.txt", "srt", "srt"), (None, "vtt", "vtt"),
])
def test_format_from_suffix_or_option(name, fmt, expected):
    assert infer_format(Path(name) if name else None, fmt, default="tsv") == expected


def test_subtitles_of_one_input_are_a_whole_document():
    from nue_core.subtitles import Segment

    result = TranscriptionResult("a.wav", "one two", 2.0, segments=[Segment(0, 0.0, 2.0, "one two")])
    out = io.StringIO()
    with ResultWriter(None, "srt", stream=out) as writer:
        writer.add(0, result)
        with pytest.raises(ValueError, match="one input"):
            writer.add(1, result)
    assert out.getvalue() == "1\n00:00:00,000 --> 00:00:02,000\none two\n"


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
    assert set(FORMATS) == {"text", "tsv", "jsonl", "json", "srt", "vtt"}
    assert "segments" not in records[0] and "words" not in records[0] and records[0]["duration"] == 1.0


def test_destination_checks(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        prepare_destination(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is not a folder"):
        prepare_destination(tmp_path / "file" / "out.tsv")
    with pytest.raises(OutputError, match="is not a folder"):
        check_destination(tmp_path / "file" / "deeper" / "run", folder=True)
    with pytest.raises(OutputError, match="is a file; give a folder"):
        check_destination(tmp_path / "file", folder=True)
    check_destination(tmp_path / "new" / "deeper" / "run", folder=True)
    assert not (tmp_path / "new").exists()  # checking creates nothing
    prepare_destination(tmp_path / "new" / "deeper" / "out.tsv")
    assert (tmp_path / "new" / "deeper").is_dir()


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
    real = os.access  # root ignores permission bits: answer as the kernel would for a 0o555 folder
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real(p, mode, **kw))
    with pytest.raises(OutputError, match=f"{tmp_path} is not writable"):
        check_destination(tmp_path / "a" / "out.tsv")


# Any text at all, tabs, quotes, CR/LF and U+2028 included (hypothesis leaves out lone surrogates).
FIELD = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), FIELD), FIELD.filter(bool), FIELD), min_size=1, max_size=4))
def test_tsv_reads_back_exactly(rows, tmp_path):
    """300 generated cases: any id, path and transcript round-trip through csv.reader(delimiter='\\t')."""
    results = [TranscriptionResult(source, text, id=uid) for uid, source, text in rows]
    path = tmp_path / "out.tsv"
    with ResultWriter(path, "tsv") as writer:
        for index, result in enumerate(results):
            writer.add(index, result)
    with open(path, encoding="utf-8", newline="") as handle:
        back = list(csv.reader(handle, delimiter="\t"))
    assert back == [[r.id or r.source, r.text] for r in results]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), FIELD), FIELD, FIELD), min_size=1, max_size=4))
def test_text_and_jsonl_keep_one_line_per_input(rows, tmp_path):
    """200 generated cases: text has one line per input, jsonl and json read back every field."""
    results = [TranscriptionResult(source, text, id=uid) for uid, source, text in rows]
    for fmt in ("text", "jsonl", "json"):
        path = tmp_path / f"out.{fmt}"
        with ResultWriter(path, fmt) as writer:
            for index, result in enumerate(results):
                writer.add(index, result)
        content = path.read_text(encoding="utf-8")
        if fmt == "text":
            assert content.count("\n") == len(results) and content.split("\n")[:-1] == [
                " ".join(r.text.split()) for r in results]
        else:
            records = json.loads(content) if fmt == "json" else [json.loads(x) for x in content.split("\n")[:-1]]
            assert [(r["id"], r["source"], r["text"], r["index"]) for r in records] == [
                (r.id, r.source, r.text, i) for i, r in enumerate(results)]
        assert not writers.partial_path(path).exists()


def test_a_name_that_is_not_utf8_is_written_as_an_escape(tmp_path):
    """A file name with a byte that is not UTF-8 decodes to a lone surrogate; writing it used to fail."""
    name = os.fsdecode(b"caf\xe9.wav")
    result = TranscriptionResult(name, "one")
    for fmt in ("tsv", "jsonl"):
        path = tmp_path / f"out.{fmt}"
        with ResultWriter(path, fmt) as writer:
            writer.add(0, result)
        content = path.read_text(encoding="utf-8")
        assert "caf\\udce9.wav" in content
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["source"] == name


class _NoSpace:
    """A file on a disk that fills after ``room`` writes."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, text):
        if self.room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        return self.handle.write(text)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_full_disk_keeps_the_previous_file_and_names_the_partial_one(tmp_path, monkeypatch):
    real = writers._open_text
    monkeypatch.setattr(writers, "_open_text", lambda path: _NoSpace(real(path), 2))
    path = tmp_path / "out.tsv"
    path.write_text("previous\n")
    with pytest.raises(OutputError) as err:
        with ResultWriter(path, "tsv") as writer:
            for i in range(3):
                writer.add(i, TranscriptionResult(f"{i}.wav", "one"))
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    message = str(err.value)
    assert "no space left on device" in message and f"{path} is unchanged" in message
    assert f"the 2 result(s) finished before this are in {path}.partial" in message
    assert path.read_text() == "previous\n"
    assert Path(f"{path}.partial").read_text().splitlines() == ["0.wav\tone", "1.wav\tone"]


def test_nothing_written_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "_open_text", lambda path: _NoSpace(open(path, "w"), 0))
    with pytest.raises(OutputError, match="was not written$"):
        with LineFile(tmp_path / "out.jsonl") as lines:
            lines.write("{}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_keeps_the_partial_file(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with ResultWriter(path, "jsonl") as writer:
            writer.add(0, TranscriptionResult("a.wav", "one"))
            raise RuntimeError("decoding died")
    assert not path.exists() and json.loads(Path(f"{path}.partial").read_text())["source"] == "a.wav"
    assert f"{path}.partial" in caplog.text and "kept" in caplog.text


def test_write_atomic_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def fail(fd):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(writers.os, "fsync", fail)
    with pytest.raises(OutputError, match="read-only file system.*is unchanged"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    return path


@pytest.mark.parametrize(("extra", "expected"), [
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
