"""Property tests over generated manifests: every line is an entry or that line's problem, never a crash.

JSONL lines are built from arbitrary JSON values and Unicode (lone surrogates included), raw bytes,
Latin-1 text, deeply nested arrays and BOMs; Kaldi folders from random ids, texts, separators
(spaces and tabs) and segment bounds. Also: a bad transcript stops ``nue evaluate`` before decoding,
and ``--skip-bad`` training leaves bad manifest lines out and counts them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nue_core.data.manifest import ManifestError, Utterance, read_manifest, scan_manifest

JSONL_CASES, KALDI_CASES, KALDI_VALID_CASES = 300, 150, 100
PROPS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every code point, surrogates (category Cs) and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True), any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(any_text, inner, max_size=3)), max_leaves=10)
KEYS = ["audio", "text", "duration", "speaker", "id", "extra"]
objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5)
likely_good = st.fixed_dictionaries(
    {"audio": st.text(min_size=1, max_size=8), "text": any_text},
    optional={"id": st.one_of(any_text, st.integers()), "duration": st.floats(allow_nan=True),
              "speaker": st.one_of(any_text, st.integers())})


@st.composite
def jsonl_lines(draw) -> bytes:
    """One line (no newline) of a manifest as found in the wild."""
    kind = draw(st.sampled_from(["object", "good", "value", "utf8", "bytes", "latin1", "nested", "text"]))
    if kind in ("object", "good", "value"):
        value = draw({"object": objects, "good": likely_good, "value": json_values}[kind])
        # ensure_ascii=False + surrogatepass writes lone surrogates as (invalid) UTF-8 bytes.
        ascii_only = draw(st.booleans())
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if kind == "utf8":
        return json.dumps(draw(likely_good), ensure_ascii=False).encode("utf-8", "replace")
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b"")
    if kind == "latin1":
        return json.dumps(draw(likely_good), ensure_ascii=False).encode("latin-1", "replace")
    if kind == "nested":
        depth = draw(st.sampled_from([1, 10, 63, 64, 65, 1000, 100_000]))
        opener = draw(st.sampled_from(["[", "{\"a\":", "[{\"a\":"]))
        return (opener * depth + "1" + draw(st.sampled_from(["", "]" * depth]))).encode()
    return draw(any_text).replace("\n", "").encode("utf-8", "surrogatepass")


def _nonblank_lines(data: bytes) -> list[int]:
    """Line numbers the reader must account for: every line that is not whitespace only."""
    numbers = []
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            blank = not raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            blank = False
        if not blank:
            numbers.append(number)
    return numbers


def _assert_usable(entry: Utterance) -> None:
    """What every later step needs: printable, writable text and sane numbers."""
    for value in (entry.id, entry.text, str(entry.audio), entry.speaker or ""):
        value.encode("utf-8")
        assert "\x00" not in value
    assert entry.duration is None or (math.isfinite(entry.duration) and entry.duration >= 0)


@settings(max_examples=JSONL_CASES, **PROPS)
@given(lines=st.lists(jsonl_lines(), min_size=1, max_size=6), bom=st.booleans())
def test_every_jsonl_line_is_an_entry_or_its_own_problem(tmp_path_factory, lines, bom):
    """300 generated manifests (JSONL_CASES): each non-blank line is accounted for exactly once,
    as an entry or as a problem naming ``file:line``; nothing else escapes, and the strict reader
    raises ``ManifestError`` naming the file or returns the same entries."""
    path = tmp_path_factory.mktemp("m") / "m.jsonl"
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    scanned = scan_manifest(path)
    for entry in scanned.entries:
        _assert_usable(entry)
    sources = [e.source for e in scanned.entries] + [p.source for p in scanned.problems]
    assert sorted(sources, key=lambda s: int(s.rsplit(":", 1)[1])) == [f"{path}:{n}" for n in _nonblank_lines(data)]
    for problem in scanned.problems:
        str(problem).encode("utf-8")
    try:
        assert read_manifest(path) == scanned.entries and not scanned.problems
    except ManifestError as exc:
        assert scanned.problems and f"{path}:" in str(exc)


SEP = st.text(st.sampled_from(" \t"), min_size=1, max_size=3)
ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00 \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029"),
              min_size=1, max_size=6)
field_text = st.text(st.characters(exclude_categories=()), max_size=10)
seconds = st.one_of(st.floats(-5, 50), st.sampled_from(["-1", "nan", "inf", "x", "1e999", ""]))


@st.composite
def kaldi_line(draw, fields: int) -> bytes:
    """``key<sep>field...`` with random separators; the fields may hold anything, even bad bytes."""
    parts = [draw(ids)] + [str(draw(seconds)) if fields == 3 and i else draw(field_text) for i in range(fields)]
    line = parts[0]
    for part in parts[1:]:
        line += draw(SEP) + part
    raw = line.replace("\n", "").replace("\r", "").encode("utf-8", "surrogatepass")
    return raw + draw(st.sampled_from([b"", b"\r", b" ", b"\t", b"\xe9"]))


@settings(max_examples=KALDI_CASES, **PROPS)
@given(wav=st.lists(kaldi_line(1), min_size=1, max_size=4), text=st.lists(kaldi_line(1), max_size=4),
       segments=st.one_of(st.none(), st.lists(kaldi_line(3), max_size=4)),
       utt2spk=st.one_of(st.none(), st.lists(kaldi_line(1), max_size=3)), bom=st.booleans())
def test_every_kaldi_folder_reads_or_names_its_lines(tmp_path_factory, wav, text, segments, utt2spk, bom):
    """150 generated Kaldi folders (KALDI_CASES) with arbitrary keys, fields, separators, segment
    bounds and stray bytes: the reader returns usable entries plus problems naming ``file:line``
    (a segment problem names its id), and never raises anything but ``ManifestError``."""
    folder = tmp_path_factory.mktemp("k")
    files = {"wav.scp": wav, "text": text, "segments": segments, "utt2spk": utt2spk}
    for name, lines in files.items():
        if lines is not None:
            (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    scanned = scan_manifest(folder, require_text=False)
    for entry in scanned.entries:
        _assert_usable(entry)
        assert entry.start is None or (math.isfinite(entry.start) and entry.start >= 0)
        assert entry.end is None or entry.start is not None and entry.end > entry.start
    for problem in scanned.problems:
        name, line = problem.source.rsplit(":", 1)
        assert Path(name).parent == folder and Path(name).name in files and int(line) >= 1, problem
        str(problem).encode("utf-8")
    try:
        read_manifest(folder)
    except ManifestError as exc:
        assert str(folder) in str(exc)


@settings(max_examples=KALDI_VALID_CASES, **PROPS)
@given(rows=st.dictionaries(ids, st.tuples(st.text(st.characters(codec="utf-8", exclude_characters="\x00\n\r"),
                                                   max_size=10), st.floats(0, 100), st.floats(0.01, 10)),
                            min_size=1, max_size=5),
       seps=st.lists(SEP, min_size=12, max_size=12))
def test_valid_kaldi_folders_read_the_same_with_any_separators(tmp_path_factory, rows, seps):
    """100 generated valid folders (KALDI_VALID_CASES): spaces and tabs (any mix) are both separators,
    and the transcript is the rest of the line with its outer spaces and tabs removed."""
    folder = tmp_path_factory.mktemp("k")
    s = iter(seps * 50)
    wav = "".join(f"{k}{next(s)}/data/{i}.wav\n" for i, k in enumerate(rows))
    seg = "".join(f"{k}{next(s)}{k}{next(s)}{a!r}{next(s)}{a + d!r}\n" for k, (_, a, d) in rows.items())
    txt = "".join(f"{k}{next(s)}{t}\n" for k, (t, _, _) in rows.items())
    for name, content in (("wav.scp", wav), ("segments", seg), ("text", txt)):
        (folder / name).write_text(content, encoding="utf-8")
    entries = read_manifest(folder)
    assert [(e.id, e.text, e.start, e.end) for e in entries] == [
        (k, t.strip(" \t"), a, a + d) for k, (t, a, d) in rows.items()]


def test_evaluate_stops_before_decoding_on_a_lone_surrogate(tmp_path, monkeypatch):
    """It used to decode everything and then fail writing results.jsonl, keeping nothing."""
    from nue_core.cli import _register_verbs, app
    from nue_core.inference import runner

    _register_verbs()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": "one"}) + "\n"
                        + json.dumps({"audio": "a.wav", "text": "two \ud800", "id": "x"}) + "\n", encoding="utf-8")
    decoded, real = [], runner.run_transcription
    monkeypatch.setattr(runner, "run_transcription", lambda *a, **k: decoded.append(a) or real(*a, **k))
    res = CliRunner().invoke(app, ["evaluate", "tiny", str(manifest), "-o", str(tmp_path / "out"), "--no-progress",
                                   "--max-new-tokens", "2"])
    assert not decoded, "decoding started before the manifest was checked"
    assert isinstance(res.exception, ManifestError), res.exception
    message = str(res.exception)
    assert f"{manifest}:2" in message and "'text'" in message and "surrogate" in message
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_skip_bad_training_data_leaves_bad_manifest_lines_out(tmp_path):
    from nue_core.data.validate import DataError
    from nue_core.train.data import UtteranceSet

    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    manifest = tmp_path / "train.jsonl"
    manifest.write_bytes(b'{"audio": "a.wav", "text": "one"}\n' + b"[" * 100_000 + b"\n"
                         + b'{"audio": "a.wav", "text": "caf\xe9"}\n' + b'{"audio": "a.wav", "text": "\\ud800"}\n')
    try:
        UtteranceSet.from_manifest(manifest, 16000, 16.0, skip_bad=False)
    except (DataError, ManifestError) as exc:
        assert all(f"{manifest}:{n}" in str(exc) for n in (2, 3, 4)) and "--skip-bad" in str(exc)
    else:
        raise AssertionError("bad lines were not reported")
    data, report = UtteranceSet.from_manifest(manifest, 16000, 16.0, skip_bad=True)
    assert len(data) == 1 and [p.source for p in report.problems] == [f"{manifest}:{n}" for n in (2, 3, 4)]
