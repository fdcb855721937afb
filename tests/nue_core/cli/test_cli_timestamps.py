"""`nue transcribe --timestamps`, srt / vtt / json / tsv with times, and `--output-dir`, as a user runs them.

The embedded default model (a CTC head, 16 s limit) transcribes a 40-second file cut into chunks;
what it writes must parse back with the `srt` and `webvtt-py` libraries, with monotonic times
within the file, and the transcript must be the same with and without timestamps.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import nue_core
from nue_core.inference.transcriber import TranscriptionResult
from nue_core.inference.writers import read_jsonl_results, write_line
from nue_core.subtitles import Segment
from nue_core.word_timing import Word

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

EXAMPLES = sorted((Path(nue_core.__file__).parent / "default_model" / "examples").glob("*.wav"))
SECONDS = 40.0


def nue(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `nue ARGS` in this process: (exit status, stdout, stderr)."""
    from nue_core.cli import main

    monkeypatch.setattr(sys, "argv", ["nue", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    out = capsys.readouterr()
    return int(stopped.value.code or 0), out.out, out.err


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """40 s of the example digits with short pauses: long enough to be cut into 3 chunks."""
    clips = [sf.read(p, dtype="float32")[0] for p in EXAMPLES]
    gap = np.zeros(6400, np.float32)
    parts: list[np.ndarray] = []
    while sum(x.shape[0] for x in parts) < SECONDS * 16000:
        for clip in clips:
            parts += [clip, gap]
    path = tmp_path_factory.mktemp("long") / "talk.wav"
    sf.write(path, np.concatenate(parts)[: int(SECONDS * 16000)], 16000)
    return path


@pytest.fixture(scope="module")
def plain_text(long_wav, tmp_path_factory) -> str:
    """The transcript without --timestamps (through the API: the CLI writes the same text)."""
    model = nue_core.load("default")
    result = nue_core.transcribe(model, [long_wav])[0]
    assert result.ok and result.chunks >= 3 and result.text
    return result.text


def _vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _check_times(spans: list[tuple[float, float]], duration: float) -> None:
    assert spans, "no cues"
    flat = [t for span in spans for t in span]
    assert flat == sorted(flat), "times are not monotonic"
    assert flat[0] >= 0 and flat[-1] <= duration


def test_word_timestamps_of_a_long_file_parse_back(long_wav, plain_text, tmp_path, monkeypatch, capsys):
    """One run writes srt, vtt and json (a file each, in --output-dir): each parses back."""
    out = tmp_path / "subs"
    code, _, err = nue(monkeypatch, capsys, "transcribe", "default", str(long_wav), "--timestamps", "word",
                       "--output-dir", str(out), "--format", "all", "--no-progress")
    assert code == 0, err
    for fmt in ("srt", "vtt", "json"):
        text = (out / f"talk.{fmt}").read_text(encoding="utf-8")
        if fmt == "srt":
            cues = list(srt.parse(text))
            assert [c.index for c in cues] == list(range(1, len(cues) + 1))
            spans = [(c.start.total_seconds(), c.end.total_seconds()) for c in cues]
            lines = [c.content for c in cues]
        elif fmt == "vtt":
            cues = list(webvtt.from_string(text))
            spans = [(_vtt_seconds(c.start), _vtt_seconds(c.end)) for c in cues]
            lines = [c.text for c in cues]
        else:
            record = json.loads(text)  # one input's record, an object
            assert {"text", "duration", "segments", "words", "source", "index", "error"} <= set(record)
            assert record["text"] == plain_text and record["duration"] == SECONDS and record["error"] is None
            assert [s["id"] for s in record["segments"]] == list(range(len(record["segments"])))
            assert {"id", "start", "end", "text"} <= set(record["segments"][0])
            assert {"word", "start", "end"} <= set(record["words"][0])
            _check_times([(s["start"], s["end"]) for s in record["segments"]], SECONDS)
            spans = [(w["start"], w["end"]) for w in record["words"]]
            assert all(round(t, 3) == t for span in spans for t in span)  # millisecond resolution
            lines = [w["word"] for w in record["words"]]
        _check_times(spans, SECONDS)
        assert len(spans) > 3 and all(line.strip() for line in lines)
        if fmt != "json":  # subtitle lines from the words: short enough to read
            assert all(len(line) <= 42 for line in lines) and all(b - a <= 7.0 + 1e-3 for a, b in spans)
            assert spans[-1][0] > 16.0  # absolute times, past the first chunk


def test_json_document_of_one_input_with_words(long_wav, plain_text, tmp_path, monkeypatch, capsys):
    out = tmp_path / "talk.json"
    code, _, err = nue(monkeypatch, capsys, "transcribe", "default", str(long_wav), "--timestamps", "word",
                       "-o", str(out), "--no-progress")
    assert code == 0, err
    records = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(records, list) and len(records) == 1 and records[0]["text"] == plain_text
    assert records[0]["words"] and records[0]["index"] == 0


def test_tsv_with_timestamps_has_a_row_per_segment(long_wav, plain_text, tmp_path, monkeypatch, capsys):
    out = tmp_path / "talk.tsv"
    code, _, err = nue(monkeypatch, capsys, "transcribe", "default", str(long_wav), "--timestamps", "segment",
                       "-o", str(out), "--no-progress")
    assert code == 0, err
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    assert len(rows) >= 3 and list(rows[0]) == ["id", "start", "end", "text"]
    assert {r["id"] for r in rows} == {str(long_wav)}
    _check_times([(float(r["start"]), float(r["end"])) for r in rows], SECONDS)
    assert float(rows[-1]["end"]) == SECONDS and all(len(r["start"].split(".")[1]) == 3 for r in rows)
    assert " ".join(r["text"] for r in rows).split() != [] and rows[0]["text"] in plain_text


def test_output_dir_writes_every_format_per_input_with_distinct_names(tmp_path, monkeypatch, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(EXAMPLES[1], tmp_path / folder / "clip.wav")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.wav").write_bytes(b"RIFF not audio at all" * 4)
    out = tmp_path / "subs"
    code, _, err = nue(monkeypatch, capsys, "transcribe", "default", str(tmp_path / "a" / "clip.wav"),
                       str(tmp_path / "b" / "clip.wav"), str(tmp_path / "c" / "broken.wav"),
                       "--output-dir", str(out), "--format", "all", "--no-progress")
    assert code == 1 and "broken.wav" in err  # the broken input is named, and writes no file
    names = sorted(p.name for p in out.iterdir())
    expected = [f"{stem}.{ext}" for stem in ("clip", "clip-2") for ext in ("txt", "tsv", "srt", "vtt", "json")]
    assert names == sorted(expected)
    for stem in ("clip", "clip-2"):
        record = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        assert isinstance(record, dict) and {"text", "duration", "segments"} <= set(record) and "words" not in record
        assert record["text"] and (out / f"{stem}.txt").read_text(encoding="utf-8") == record["text"] + "\n"
        cues = list(srt.parse((out / f"{stem}.srt").read_text(encoding="utf-8")))
        assert [c.content for c in cues] == [record["text"]]  # no --timestamps: one cue per segment
        assert cues[0].end.total_seconds() <= record["duration"]
        vtt = list(webvtt.read(str(out / f"{stem}.vtt")))
        assert [c.text for c in vtt] == [record["text"]]
        with open(out / f"{stem}.tsv", encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, dialect="excel-tab"))
        assert rows[0] == ["id", "start", "end", "text"] and rows[1][3] == record["text"]
    assert json.loads((out / "clip.json").read_text())["source"].endswith("a/clip.wav")  # names in input order


@pytest.mark.parametrize(("extra", "expected"), [
    (["-o", "out.srt"], "use --output-dir DIR"),
    (["--format", "vtt"], "use --output-dir DIR"),
    (["--format", "all", "-o", "out.txt"], "give --output-dir DIR"),
    (["--format", "all"], "give --output-dir DIR"),
    (["--timestamps", "words"], "'words': choose segment or word"),
    (["-o", "out.txt", "--output-dir", "subs"], "not both"),
    (["--output-dir", "file"], "is a file; give a folder"),
])
def test_usage_errors_come_before_the_model_loads(extra, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(8000, np.float32), 16000)
    # The model does not exist: these errors must come first.
    code, _, err = nue(monkeypatch, capsys, "transcribe", str(tmp_path / "no-such-model"), "a.wav", "b.wav", *extra)
    assert code == 2 and "Usage: nue transcribe" in err and expected in " ".join(err.replace("│", " ").split()), err
    assert not list(tmp_path.glob("out.*")) and not (tmp_path / "subs").exists()


@pytest.fixture(scope="module")
def no_ctc_model(tmp_path_factory) -> Path:
    from nue_core.checkpoint import save_model
    from nue_core.composer import compose
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    return save_model(compose(tiny_config()), tmp_path_factory.mktemp("m") / "no-ctc")


def test_word_timestamps_without_a_ctc_head_are_one_line_and_segments_work(no_ctc_model, tmp_path, monkeypatch, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32), 16000)
    out = tmp_path / "a.srt"
    code, _, err = nue(monkeypatch, capsys, "transcribe", str(no_ctc_model), str(wav), "--timestamps", "word",
                       "-o", str(out), "--max-new-tokens", "3", "--no-progress")
    lines = [line for line in err.splitlines() if line.strip() and "untrained" not in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "--timestamps word" in lines[0] and "CTC head" in lines[0] and "segment" in lines[0]
    assert not out.exists() and not Path(f"{out}.partial").exists()
    code, _, err = nue(monkeypatch, capsys, "transcribe", str(no_ctc_model), str(wav), "-o", str(out),
                       "--max-new-tokens", "3", "--no-progress")
    assert code == 0, err
    cues = list(srt.parse(out.read_text(encoding="utf-8")))
    assert all(0 <= c.start.total_seconds() <= c.end.total_seconds() <= 0.5 for c in cues)


def test_run_options_refuse_an_unknown_timestamps_kind():
    from nue_core.errors import NueError
    from nue_core.inference.runner import RunOptions

    with pytest.raises(NueError, match="unknown --timestamps 'words'; choose segment or word"):
        RunOptions(timestamps="words")
    assert RunOptions(timestamps="word").timestamps == "word"


def test_output_dir_names_are_safe_and_distinct(tmp_path):
    from nue_core.inference.output_dir import OutputDirWriter

    writer = OutputDirWriter(tmp_path / "out", ["text"])
    results = [TranscriptionResult("x/Talk.wav", "a"), TranscriptionResult("y/talk.flac", "b"),
               TranscriptionResult("z.wav", "c", id="spk1/utt:1"), TranscriptionResult("..", "d"),
               TranscriptionResult("talk-2.wav", "e")]
    names = [writer.name_for(r, i) for i, r in enumerate(results)]
    assert names == ["Talk", "talk-2", "spk1_utt_1", "input-3", "talk-2-2"]


def test_jsonl_parts_keep_segments_and_words(tmp_path):
    """Data-parallel parts are jsonl records: segments and words come back as their dataclasses."""
    timed = TranscriptionResult("a.wav", "one two", 2.5, chunks=1,
                                segments=[Segment(0, 0.0, 2.5, "one two")],
                                words=[Word("one", 0.25, 0.5, 0.9), Word("two", 0.75, 1.125, 0.5)])
    plain = TranscriptionResult("b.wav", "three", 1.0)
    failed = TranscriptionResult("c.wav", error="c.wav: broken")
    path = tmp_path / "part.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for index, result in zip((4, 7, 9), (timed, plain, failed)):
            write_line(handle, result, "jsonl", index)
    back = read_jsonl_results(path)
    assert back == [(4, timed), (7, plain), (9, failed)]
    assert isinstance(back[0][1].segments[0], Segment) and isinstance(back[0][1].words[0], Word)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert "words" not in records[1] and "segments" not in records[1] and records[1]["duration"] == 1.0
