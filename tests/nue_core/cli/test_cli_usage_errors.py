"""Every verb, through the real entry point: a usage error prints the usage line, exits 2, no traceback.

The verbs and their parameters are read from the app, so a new verb or option is covered without
editing this file. typer's CliRunner bypasses ``main()`` (where the bug was), so these call
``nue_core.cli.main`` with ``sys.argv`` patched, plus one real subprocess.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing

import pytest
import typer

from nue_core.cli import _register_verbs, app, main

_register_verbs()
VERBS = typer.main.get_command(app).commands  # name -> command, as `nue` has them


def _visible_options(command) -> list:
    return [p for p in command.params if p.param_type_name == "option" and not p.hidden]


def _placeholders(command) -> list[str]:
    """Values for the required parameters, so that only the error under test is wrong."""
    args = []
    for param in command.params:
        if param.required and param.param_type_name == "option":
            args += [param.opts[0], "x"]
    return args + ["x" for p in command.params if p.required and p.param_type_name == "argument"]


def _python_type(command, name: str) -> type:
    """The annotation of parameter ``name`` of the verb's function (Optional[X] -> X)."""
    hint = typing.get_type_hints(inspect.unwrap(command.callback))[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else hint


def _bad_value(command) -> list[str] | None:
    """Arguments with one bad value: a word for a number, else a value given to a flag."""
    options = _visible_options(command)
    for param in options:
        if _python_type(command, param.name) in (int, float):
            return [param.opts[0], "not-a-number"]
    for param in options:
        if param.is_flag:
            return [f"{param.opts[0]}=oops"]
    return None


def _cases() -> list:
    cases = []
    for name, command in sorted(VERBS.items()):
        cases.append(pytest.param([name, "--no-such-option"], "No such option", id=f"{name}-unknown-option"))
        if any(p.required and p.param_type_name == "argument" for p in command.params):
            cases.append(pytest.param([name], "Missing argument", id=f"{name}-missing-argument"))
        bad = _bad_value(command)
        if bad is not None:
            cases.append(pytest.param([name, *bad, *_placeholders(command)], bad[0].split("=")[0],
                                      id=f"{name}-bad-value"))
    return cases


@pytest.mark.parametrize(("argv", "expected"), _cases())
def test_usage_error_exits_2_with_usage_line(argv, expected, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["nue", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()  # an unhandled exception (the old NoSuchOption traceback) fails the test here
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert stopped.value.code == 2, text
    assert f"Usage: nue {argv[0]}" in printed.err and expected in printed.err
    assert "Traceback" not in text


def test_every_verb_is_covered():
    covered = {case.values[0][0] for case in _cases()}
    assert covered == set(VERBS) and {"transcribe", "evaluate", "train", "compose", "plugins"} <= covered


def test_console_script_prints_usage_not_traceback():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", "from nue_core.cli import main; main()", "transcribe", "default",
                          "--bogus"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert "Usage: nue transcribe" in res.stderr and "No such option: --bogus" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
