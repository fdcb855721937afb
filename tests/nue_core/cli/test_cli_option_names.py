"""One spelling per option across verbs: --output/-o everywhere (--out a hidden alias), -b = --batch-size."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer

from nue_core.cli import _register_verbs, app, main

_register_verbs()
VERBS = typer.main.get_command(app).commands
OLD_OUT_VERBS = {"evaluate", "train", "ablate"}  # spelled it --out before


def _options(command, hidden: bool = False) -> dict[str, list[str]]:
    return {p.name: p.opts for p in command.params if p.param_type_name == "option" and p.hidden == hidden}


def test_output_is_spelled_one_way_on_every_verb():
    with_output = set()
    for name, command in VERBS.items():
        for opts in _options(command).values():
            assert "--out" not in opts, f"nue {name} shows --out"
            if "-o" in opts or "--output" in opts:
                assert opts == ["--output", "-o"], f"nue {name}: {opts}"
                with_output.add(name)
    assert with_output == {"transcribe", "evaluate", "compose", "export", "merge-lora", "plot", "train", "ablate"}


def test_short_options_mean_one_thing():
    meaning: dict[str, set[str]] = {}
    for command in VERBS.values():
        for opts in _options(command).values():
            longs = tuple(o for o in opts if o.startswith("--"))
            for short in (o for o in opts if not o.startswith("--")):
                meaning.setdefault(short, set()).add(longs[0])
    assert meaning["-b"] == {"--batch-size"}
    assert {short: longs for short, longs in meaning.items() if len(longs) > 1} == {}


def test_old_out_is_a_hidden_alias_where_it_was():
    assert {n for n, c in VERBS.items() if ["--out"] in _options(c, hidden=True).values()} == OLD_OUT_VERBS


def _run(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["nue", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()
    return stopped.value.code, capsys.readouterr().err


def test_old_spelling_still_works_and_two_different_paths_are_refused(tmp_path: Path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    code, err = _run(monkeypatch, capsys, "train", "tiny", "--train", "t.jsonl", "--out", str(run))
    assert code == 2 and "already holds a training run" in err  # --out was taken as the run folder
    code, err = _run(monkeypatch, capsys, "train", "tiny", "--train", "t.jsonl", "--out", "a", "-o", "b")
    assert code == 2 and "Usage: nue train" in err and "give one" in err
    code, err = _run(monkeypatch, capsys, "train", "tiny", "--train", "t.jsonl")
    assert code == 2 and "Missing option '--output'" in err
