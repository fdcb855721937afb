"""``atomic_folder``: a folder is replaced whole or not at all, and its temporaries are named so a
training run recognises (and only it removes) the ones a killed process leaves behind."""

from __future__ import annotations

import os

import pytest

import nue_core.atomic as atomic
from nue_core.atomic import aside_name, atomic_folder, discard_folder, temp_prefix
from nue_core.train.run_folder import remove_stale_temporaries, stale_temporaries


def _folder(path, text: str):
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    return path


def test_success_replaces_the_folder_whole(tmp_path):
    old = _folder(tmp_path / "m", "old")
    (old / "only-old.txt").write_text("x")
    with atomic_folder(tmp_path / "m") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(temp_prefix("m")) and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a.txt"]
    assert (tmp_path / "m" / "a.txt").read_text() == "new"


def test_creates_the_parent_and_gives_umask_modes(tmp_path):
    with atomic_folder(tmp_path / "deep" / "m") as tmp:
        (tmp / "a.txt").write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "deep" / "m").stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt(), SystemExit(1)])
def test_any_failure_leaves_the_old_folder_and_no_temporary(tmp_path, error):
    _folder(tmp_path / "m", "old")
    with pytest.raises(type(error)):
        with atomic_folder(tmp_path / "m") as tmp:
            (tmp / "a.txt").write_text("half")
            raise error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert (tmp_path / "m" / "a.txt").read_text() == "old"


def test_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    _folder(tmp_path / "m", "old")
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the first moved the old folder aside; the new one cannot move in
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", second_fails)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_folder(tmp_path / "m") as tmp:
            (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert (tmp_path / "m" / "a.txt").read_text() == "old"


def test_discard_removes_the_folder(tmp_path):
    discard_folder(_folder(tmp_path / "m", "x"))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("where, name", [("", "best"), ("", "final"), ("checkpoints", "step-00000100")])
def test_leftover_names_are_recognised_by_the_run_folder(tmp_path, where, name):
    """What a killed save leaves (its temporary, or the old folder moved aside) is what a new run
    cleans up: the writer and the matcher share one naming rule."""
    run = tmp_path / "run"
    place = run / where
    place.mkdir(parents=True)
    with atomic_folder(place / name) as tmp:
        leftovers = [tmp, _folder(place / aside_name(name), "old")]
        assert stale_temporaries(run) == sorted(leftovers)
    assert remove_stale_temporaries(run) == [str(leftovers[1].relative_to(run))]  # the saved folder stays
    assert [p.name for p in place.iterdir() if p.name != "checkpoints"] == [name]
