"""Manifests as people have them: BOMs, other encodings, tabs, hostile JSON, bad segments, bad text.

Each case is either read as the user meant it or reported as that line's problem (``file:line``
and the field), and every bad line of a manifest is reported at once, before any audio is touched.
"""

import json
from pathlib import Path

import pytest

from nue_core.data.manifest import ManifestError, read_manifest, scan_manifest

GOOD = '{"audio": "a.wav", "text": "hello"}'


def _jsonl(tmp_path: Path, *lines: str | bytes, prefix: bytes = b"") -> Path:
    path = tmp_path / "m.jsonl"
    path.write_bytes(prefix + b"\n".join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines) + b"\n")
    return path


def _kaldi(folder: Path, prefix: bytes = b"", **files: str) -> Path:
    for name, text in files.items():
        (folder / name.replace("wav_scp", "wav.scp")).write_bytes(prefix + text.encode("utf-8"))
    return folder


def test_jsonl_with_utf8_bom_is_read(tmp_path):
    entries = read_manifest(_jsonl(tmp_path, GOOD, '{"audio": "b.wav", "text": "日本語"}', prefix=b"\xef\xbb\xbf"))
    assert [e.text for e in entries] == ["hello", "日本語"]


def test_kaldi_files_with_utf8_bom_are_read(tmp_path):
    folder = _kaldi(tmp_path, prefix=b"\xef\xbb\xbf", wav_scp="u1 a.wav\n", text="u1 hi there\n", utt2spk="u1 s1\n")
    [entry] = read_manifest(folder)
    assert (entry.id, entry.text, entry.speaker) == ("u1", "hi there", "s1")


def test_latin1_bytes_are_reported_with_line_and_byte_offset(tmp_path):
    path = _jsonl(tmp_path, GOOD, b'{"audio": "b.wav", "text": "caf\xe9"}', GOOD.replace("a.wav", "c.wav"))
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    message = str(err.value)
    offset = len(GOOD) + 1 + len(b'{"audio": "b.wav", "text": "caf')
    assert f"{path}:2" in message and "UTF-8" in message and f"byte offset {offset}" in message
    scanned = scan_manifest(path)  # the other lines are still read
    assert [e.audio.name for e in scanned.entries] == ["a.wav", "c.wav"]
    assert [p.source for p in scanned.problems] == [f"{path}:2"]


def test_deeply_nested_json_is_a_line_error_not_a_recursion_error(tmp_path):
    path = _jsonl(tmp_path, GOOD, "[" * 100_000 + "]" * 100_000, '{"audio": "x.wav", "text": ' + "[" * 100_000)
    scanned = scan_manifest(path)
    assert [p.source for p in scanned.problems] == [f"{path}:2", f"{path}:3"]
    assert all("nested" in p.message for p in scanned.problems)
    assert len(scanned.entries) == 1


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    text = "[{" * 5000 + '\\"' + "]}" * 10
    [entry] = read_manifest(_jsonl(tmp_path, '{"audio": "a.wav", "text": "' + text + '"}'))
    assert entry.text == json.loads('"' + text + '"')


@pytest.mark.parametrize("value,field", [
    ('{"audio": "a.wav", "text": "ok \\ud800 no"}', "'text'"),
    ('{"audio": "a.wav", "text": "nul \\u0000 here"}', "'text'"),
    ('{"audio": "a\\udfff.wav", "text": "x"}', "'audio'"),
    ('{"audio": "a\\u0000.wav", "text": "x"}', "'audio'"),
    ('{"audio": "a.wav", "text": "x", "id": "\\ud83d"}', "'id'"),
    ('{"audio": "a.wav", "text": "x", "speaker": "\\u0000"}', "'speaker'"),
    ('{"audio": "a.wav", "text": "x", "duration": NaN}', "'duration'"),
    ('{"audio": "a.wav", "text": "x", "duration": Infinity}', "'duration'"),
    ('{"audio": "a.wav", "text": "x", "duration": 1' + "0" * 400 + "}", "'duration'"),
    ('{"audio": "a.wav", "text": "x", "duration": 1' + "0" * 5000 + "}", "not valid JSON"),
    ('{"audio": "a.wav", "text": "x", "id": {"a": 1}}', "'id'"),
    ('{"audio": "a.wav", "text": "x", "speaker": [1]}', "'speaker'"),
])
def test_bad_values_are_named_by_line_and_field(tmp_path, value, field):
    path = _jsonl(tmp_path, GOOD, value)
    scanned = scan_manifest(path)
    assert len(scanned.entries) == 1 and len(scanned.problems) == 1, scanned.problems
    problem = scanned.problems[0]
    assert problem.source == f"{path}:2" and field in problem.message, problem
    problem.message.encode("utf-8")  # the message itself can be printed


def test_every_bad_line_is_reported_at_once(tmp_path):
    surrogate = '{"audio": "a.wav", "text": "\\ud800"}'
    path = _jsonl(tmp_path, "{bad", GOOD, surrogate, b"\xff\xfe", GOOD.replace("a.wav", "b"))
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    message = str(err.value)
    assert "3 bad lines" in message and all(f"{path}:{n}:" in message for n in (1, 3, 4))
    assert err.value.problems and len(err.value.problems) == 3


def test_kaldi_files_separated_by_tabs(tmp_path):
    folder = _kaldi(tmp_path, wav_scp="rec1\t/data/rec1.wav\nrec2 \t /data/rec2.wav\n",
                    segments="u1\trec1\t0.0\t1.5\nu2 rec2\t0.5  2\r\n",
                    text="u1\thello there\nu2\t \tbye\n", utt2spk="u1\tspk1\nu2  spk2\n")
    entries = read_manifest(folder)
    assert [(e.id, e.audio, e.text, e.start, e.end, e.speaker) for e in entries] == [
        ("u1", Path("/data/rec1.wav"), "hello there", 0.0, 1.5, "spk1"),
        ("u2", Path("/data/rec2.wav"), "bye", 0.5, 2.0, "spk2")]


def test_segment_with_start_after_end_is_that_segments_problem(tmp_path):
    folder = _kaldi(tmp_path, wav_scp="rec1 /data/rec1.wav\n", segments="u1 rec1 0 1\nu2 rec1 3.0 1.5\n",
                    text="u1 a\nu2 b\n")
    scanned = scan_manifest(folder)
    assert [e.id for e in scanned.entries] == ["u1"]
    [problem] = scanned.problems
    assert problem.source == f"{folder / 'segments'}:2" and "'u2'" in problem.message and "start" in problem.message
    with pytest.raises(ManifestError, match="segments:2"):
        read_manifest(folder)


@pytest.mark.parametrize("line,words", [
    ("u1 rec1 -1 2", "negative"), ("u1 rec1 nan 2", "seconds"), ("u1 rec1 0 inf", "seconds"),
    ("u1 rec1 x 2", "seconds"), ("u1 rec1 0", "utt recording start end"), ("u1 rec1 0 1 2", "channel"),
    ("u1 rec9 0 1", "not in"),
])
def test_bad_segments_are_reported_per_line(tmp_path, line, words):
    folder = _kaldi(tmp_path, wav_scp="rec1 /data/rec1.wav\n", segments=line + "\n", text="u1 a\n")
    [problem] = scan_manifest(folder).problems
    assert problem.source == f"{folder / 'segments'}:1" and words in problem.message


def test_segment_end_of_minus_one_runs_to_the_end_of_the_recording(tmp_path):
    """Kaldi's convention (extract-segments): end time -1 means the end of the file."""
    folder = _kaldi(tmp_path, wav_scp="rec1 /data/rec1.wav\n", segments="u1 rec1 2.5 -1\n", text="u1 a\n")
    [entry] = read_manifest(folder)
    assert (entry.start, entry.end, entry.duration) == (2.5, None, None)


def test_kaldi_non_utf8_line_is_reported_and_the_rest_kept(tmp_path):
    (tmp_path / "wav.scp").write_bytes(b"u1 a.wav\nu2 b.wav\n")
    (tmp_path / "text").write_bytes(b"u1 caf\xe9\nu2 fine\n")
    scanned = scan_manifest(tmp_path)
    assert [e.id for e in scanned.entries] == ["u2"]
    [problem] = scanned.problems
    assert problem.source == f"{tmp_path / 'text'}:1"
    assert "UTF-8" in problem.message and "byte offset 6" in problem.message


def test_kaldi_duplicate_and_nul_lines_are_reported(tmp_path):
    folder = _kaldi(tmp_path, wav_scp="u1 a.wav\nu1 b.wav\nu2 c.wav\n", text="u1 a\nu2 b\x00c\n")
    scanned = scan_manifest(folder)
    assert [e.id for e in scanned.entries] == ["u1"]
    assert sorted(p.source for p in scanned.problems) == [f"{folder / 'text'}:2", f"{folder / 'wav.scp'}:2"]


def test_duplicate_jsonl_id_is_a_line_problem(tmp_path):
    path = _jsonl(tmp_path, '{"audio": "a.wav", "text": "x", "id": "u"}', '{"audio": "b.wav", "text": "y", "id": "u"}')
    scanned = scan_manifest(path)
    assert [e.audio.name for e in scanned.entries] == ["a.wav"]
    assert [p.source for p in scanned.problems] == [f"{path}:2"] and "duplicate id" in scanned.problems[0].message


def test_overlong_line_is_reported_and_reading_goes_on(tmp_path):
    path = _jsonl(tmp_path, '{"audio": "a.wav", "text": "' + "x" * (2 << 20) + '"}', GOOD)
    scanned = scan_manifest(path)
    assert [p.source for p in scanned.problems] == [f"{path}:1"] and "longer than" in scanned.problems[0].message
    assert [e.source for e in scanned.entries] == [f"{path}:2"]


def test_a_manifest_that_is_not_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "m.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError, match="not a regular file"):
        read_manifest(fifo)
