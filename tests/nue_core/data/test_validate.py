"""Manifest validation: every bad entry is named by its manifest line; --skip-bad keeps the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nue_core.data.manifest import read_manifest
from nue_core.data.validate import DataError, checked_entries
from tests.nue_core.train.conftest import write_tone


def _bad_manifest(folder: Path) -> Path:
    write_tone(folder / "good.wav", "low", 0.5)
    write_tone(folder / "long.wav", "mid", 3.0)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    rows = [
        {"audio": "good.wav", "text": "low"},        # line 1: fine
        {"audio": "missing.wav", "text": "mid"},     # line 2: missing file
        {"audio": "corrupt.wav", "text": "high"},    # line 3: corrupt
        {"audio": "good.wav", "text": "  ", "id": "empty"},  # line 4: empty transcript
        {"audio": "long.wav", "text": "mid"},        # line 5: too long for a 2 s limit
    ]
    path = folder / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_report_names_every_bad_line(tmp_path: Path) -> None:
    manifest = _bad_manifest(tmp_path)
    with pytest.raises(DataError) as info:
        checked_entries(read_manifest(manifest), str(manifest), max_seconds=2.0)
    text = str(info.value)
    assert "4 bad entries of 5" in text
    assert f"{manifest}:2: audio file not found" in text
    assert f"{manifest}:3: cannot read audio" in text
    assert f"{manifest}:4: empty transcript" in text
    assert f"{manifest}:5: audio is 3.00 s, longer than the limit of 2 s" in text
    assert f"{manifest}:1" not in text
    assert "--skip-bad" in text


def test_skip_bad_keeps_good_entries_with_durations(tmp_path: Path) -> None:
    manifest = _bad_manifest(tmp_path)
    good, report = checked_entries(read_manifest(manifest), str(manifest), max_seconds=2.0, skip_bad=True)
    assert [e.text for e in good] == ["low"]
    assert good[0].duration == pytest.approx(0.5, abs=1e-3)
    assert len(report.problems) == 4


def test_nothing_usable_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"audio": "nope.wav", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable entries"):
        checked_entries(read_manifest(path), str(path), skip_bad=True)
