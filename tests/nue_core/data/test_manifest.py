import json

import pytest

from nue_core.data.manifest import ManifestError, Utterance, read_manifest, write_jsonl


def test_jsonl_relative_paths_and_round_trip(tmp_path):
    (tmp_path / "audio").mkdir()
    lines = [{"audio": "audio/a.wav", "text": "one two", "speaker": "s1", "duration": 1.5}, {"audio": "audio/b.wav", "text": "", "id": "b"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    entries = read_manifest(path)
    assert [e.id for e in entries] == [f"{path}:1", "b"]
    assert entries[0].audio == (tmp_path / "audio" / "a.wav").resolve() and entries[0].duration == 1.5
    write_jsonl(entries, tmp_path / "out" / "m2.jsonl")
    again = read_manifest(tmp_path / "out" / "m2.jsonl")
    assert [(e.audio, e.text, e.speaker) for e in again] == [(e.audio, e.text, e.speaker) for e in entries]


@pytest.mark.parametrize("line,message", [
    ("{not json", "not valid JSON"),
    ('["a"]', "JSON object"),
    ('{"audio": "a.wav", "text": "x", "lang": "en"}', "unknown key"),
    ('{"text": "x"}', "'audio'"),
    ('{"audio": "a.wav"}', "'text'"),
    ('{"audio": "a.wav", "text": "x", "duration": "long"}', "'duration'"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "ok.wav", "text": "fine"}\n' + line + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_kaldi_folder_with_segments(tmp_path):
    (tmp_path / "wav.scp").write_text("rec1 /data/rec1.wav\n")
    (tmp_path / "segments").write_text("u1 rec1 0.0 1.5\nu2 rec1 1.5 3.0\n")
    (tmp_path / "text").write_text("u1 hello there\nu2 bye\n")
    (tmp_path / "utt2spk").write_text("u1 spk\nu2 spk\n")
    entries = read_manifest(tmp_path)
    assert [(e.id, e.text, e.start, e.end, e.speaker) for e in entries] == [
        ("u1", "hello there", 0.0, 1.5, "spk"), ("u2", "bye", 1.5, 3.0, "spk")]


def test_kaldi_missing_transcript_is_named(tmp_path):
    (tmp_path / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
    (tmp_path / "text").write_text("u1 hi\n")
    with pytest.raises(ManifestError, match="no transcript for 'u2'"):
        read_manifest(tmp_path)
    assert [e.text for e in read_manifest(tmp_path, require_text=False)] == ["hi", ""]


def test_missing_manifest():
    with pytest.raises(ManifestError, match="not found"):
        read_manifest("/nonexistent/m.jsonl")


def test_jsonl_word_times_are_read(tmp_path):
    words = [{"word": "one", "start": 0.1, "end": 0.4}, {"word": "two", "start": 0.5, "end": 0.5}]
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "one two", "words": words}) + "\n")
    (entry,) = read_manifest(tmp_path / "m.jsonl")
    assert [(w.word, w.start, w.end) for w in entry.words] == [("one", 0.1, 0.4), ("two", 0.5, 0.5)]


@pytest.mark.parametrize("words, message", [
    ("one", "'words' must be a list"),
    ([{"word": "one", "start": 0.1}], "'words'[0] must be an object with exactly the keys"),
    ([{"word": "", "start": 0, "end": 1}], "'words'[0].word must be a non-empty string"),
    ([{"word": "a", "start": 0, "end": 1}, {"word": "b", "start": -1, "end": 1}], "'words'[1].start must be a finite"),
    ([{"word": "a", "start": 2, "end": 1}], "'words'[0]: end 1.0 is before start 2.0"),
    ([{"word": "a", "start": True, "end": 1}], "'words'[0].start must be a finite"),
])
def test_bad_word_times_name_the_line_and_item(tmp_path, words, message):
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "x", "words": words}) + "\n")
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path / "m.jsonl")
    assert "m.jsonl:1" in str(err.value) and message in str(err.value)
