"""``nue serve``'s command line: names of served models, refusals before anything loads."""

from __future__ import annotations

import sys

import pytest

from nue_core.cli import main
from nue_core.cli.serve import served_name


def test_served_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert served_name(str(folder)) == "my-model" and served_name(str(folder) + "/") == "my-model"
    assert served_name("default") == "default" and served_name("org/name") == "name"


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "default", "--host", "0.0.0.0"], "--api-key"),
    (["serve", "default", "--model", "nameless"], "NAME=PATH"),
    (["serve", "default", "--model", "default=x"], "twice"),
])
def test_refused_before_loading(argv, message, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "argv", ["nue", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_model_that_fails_to_load_ends_the_server(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "argv", ["nue", "serve", "./no/such/model", "--port", "0"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "no such model folder" in capsys.readouterr().err
