"""Every verb fails in one line with a documented exit status; finished work survives write faults.

Issue 14, classes 1 and 2. The verbs and their parameters are read from the app (as in
tests/nue_core/cli/test_cli_usage_errors.py), so a new verb is covered without editing this file.
Each case calls ``nue_core.cli.main`` in-process with ``sys.argv`` patched: the real entry point,
where an exception that escapes would fail the test (typer's CliRunner bypasses ``main()``).
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import os
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer

from nue_core.cli import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_IO, EXIT_USAGE, _register_verbs, main
from nue_core.cli import app as nue_app
from nue_core.inference import writers

_register_verbs()
VERBS = typer.main.get_command(nue_app).commands  # name -> command, as `nue` has them
BOX = set("│╭╮╰╯─ \n")  # rich draws usage errors in a box that wraps long lines


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `nue ARGV`; an exception escaping main() fails the test."""
    monkeypatch.setattr(sys, "argv", ["nue", *argv])
    monkeypatch.delenv("NUE_DEBUG", raising=False)
    try:
        main()
        status = 0
    except SystemExit as stopped:
        status = stopped.code if isinstance(stopped.code, int) else 0
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "Traceback" not in text, text
    return status, text


def _says(text: str, fragment: str) -> bool:
    """``fragment`` appears in ``text``, allowing for rich's box and line wrapping."""
    squeeze = lambda s: "".join(c for c in s if c not in BOX)  # noqa: E731
    return squeeze(fragment) in squeeze(text)


def _type(command, name: str) -> object:
    hint = typing.get_type_hints(inspect.unwrap(command.callback))[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else hint


def _is_output(param) -> bool:
    return "--output" in getattr(param, "opts", ())


# Required options that must be valid for the verb to get as far as its inputs.
VALID = {"--format": "nue-asr"}


def _required_options(command, output: str, fill: str) -> list[str]:
    """Values for the required options: ``output`` for --output, ``fill`` (or VALID's) for the rest."""
    args = []
    for param in command.params:
        if param.param_type_name == "option" and param.required:
            args += [param.opts[0], output if _is_output(param) else VALID.get(param.opts[0], fill)]
    return args


def _with_output(command, argv: list[str], output: str) -> list[str]:
    has_output = any(_is_output(p) and not p.hidden for p in command.params)
    return argv + ["--output", output] if has_output and "--output" not in argv else argv


def _missing_input_argv(name: str, command, missing: str, out: str) -> list[str] | None:
    """The verb with every input (its arguments, else its first input path option) a missing file."""
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    argv = [name] + [missing for _ in arguments]
    if not arguments:
        paths = [p for p in command.params if p.param_type_name == "option" and not _is_output(p)
                 and not p.hidden and _type(command, p.name) is Path]
        if not paths:
            return None  # no input to miss (`nue plugins`)
        argv += [paths[0].opts[0], missing]
    return _with_output(command, argv + _required_options(command, out, missing), out)


def _unwritable_output_argv(name: str, command, output: str) -> list[str] | None:
    if not any(_is_output(p) and not p.hidden for p in command.params):
        return None
    arguments = ["x" for p in command.params if p.param_type_name == "argument" and p.required]
    return _with_output(command, [name, *arguments, *_required_options(command, output, "x")], output)


def test_every_verb_is_covered():
    missing = {n for n, c in VERBS.items() if _missing_input_argv(n, c, "m", "o")}
    writes = {n for n, c in VERBS.items() if _unwritable_output_argv(n, c, "o")}
    assert missing == set(VERBS) - {"plugins"}
    assert {"transcribe", "evaluate", "train", "compose", "export", "merge-lora", "plot", "ablate"} <= writes


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_bad_option_is_a_usage_error(verb, monkeypatch, capsys):
    status, text = _run([verb, "--no-such-option"], monkeypatch, capsys)
    assert status == EXIT_USAGE and "No such option: --no-such-option" in text


@pytest.mark.parametrize("verb", sorted(set(VERBS) - {"plugins"}))
def test_missing_input_file_is_one_line_naming_it(verb, tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "no-such-input")
    argv = _missing_input_argv(verb, VERBS[verb], missing, str(tmp_path / "out"))
    status, text = _run(argv, monkeypatch, capsys)
    assert status == EXIT_USAGE, text
    assert "no-such-input" in text, text


@pytest.mark.parametrize("verb", sorted(n for n, c in VERBS.items() if _unwritable_output_argv(n, c, "o")))
@pytest.mark.parametrize("where", ["file-as-parent", "read-only-folder"])
def test_unwritable_output_is_refused_before_any_work(verb, where, tmp_path, monkeypatch, capsys):
    if where == "file-as-parent":
        blocker = tmp_path / "a-file"
        blocker.write_text("")
    else:
        blocker = tmp_path / "read-only"
        blocker.mkdir()
        blocker.chmod(0o555)
        real_access = os.access  # root ignores permission bits: report the folder as the kernel would
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == blocker else real_access(p, mode, **kw))
    output = blocker / "sub" / ("out.png" if verb == "plot" else "out.tsv" if verb == "transcribe" else "out")
    status, text = _run(_unwritable_output_argv(verb, VERBS[verb], str(output)), monkeypatch, capsys)
    assert status == EXIT_USAGE, text
    assert _says(text, "'--output'") and _says(text, str(blocker)), text
    assert not (blocker / "sub").exists() if blocker.is_dir() else True


# --- class 2: what a run finished survives a failing disk -------------------------------------

@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """Three short recordings the embedded default model decodes in well under a second each."""
    from nue_core.checkpoint import DEFAULT_MODEL_DIR

    folder = tmp_path_factory.mktemp("clips")
    data, rate = sf.read(DEFAULT_MODEL_DIR / "examples" / "digits_four.wav", dtype="float32")
    paths = []
    for i in range(3):
        paths.append(str(folder / f"c{i}.wav"))
        sf.write(paths[-1], data[: rate // 2 + 800 * i], rate)
    return paths


class _FullDisk:
    """A text file whose disk fills up after ``room`` writes (writes, or the fsync at the end)."""

    def __init__(self, handle, room: int) -> None:
        self._handle, self.room = handle, room

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        return self._handle.write(text)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _fill_disk_after(monkeypatch, room: int, fsync_fails: bool = False) -> None:
    real_open = writers._open_text
    monkeypatch.setattr(writers, "_open_text", lambda path: _FullDisk(real_open(path), room))
    if fsync_fails:
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(writers.os, "fsync", full)


def _small_windows(monkeypatch, size: int = 1) -> None:
    """Results come a window at a time; one input per window shows incremental writing."""
    from nue_core.inference.transcriber import Transcriber

    real = Transcriber.__post_init__

    def post_init(self):
        real(self)
        self.window = size
    monkeypatch.setattr(Transcriber, "__post_init__", post_init)


def test_full_disk_keeps_the_previous_file_and_the_finished_results(clips, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.tsv"
    out.write_text("previous\trun\n")
    _small_windows(monkeypatch)
    _fill_disk_after(monkeypatch, room=1)  # the first result fits, the second does not
    status, text = _run(["transcribe", "default", *clips, "-o", str(out), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_IO, text
    error = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no space left on device" in error[0] and str(out) in error[0], text
    assert f"{out}.partial" in error[0] and "is unchanged" in error[0]
    assert out.read_text() == "previous\trun\n"
    assert Path(f"{out}.partial").read_text().splitlines()[0].startswith(clips[0])


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_full_disk_at_the_end_keeps_the_previous_file(fmt, clips, tmp_path, monkeypatch, capsys):
    out = tmp_path / f"out.{fmt}"
    out.write_text("[]\n")
    _fill_disk_after(monkeypatch, room=100, fsync_fails=True)
    status, text = _run(["transcribe", "default", *clips, "-o", str(out), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_IO and "no space left on device" in text, text
    assert out.read_text() == "[]\n"
    rows = [json.loads(line) for line in Path(f"{out}.partial").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]  # json: its records are kept as jsonl
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_evaluate_full_disk_keeps_previous_results(clips, tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "audio": c, "text": "four"}) + "\n"
                                for i, c in enumerate(clips)))
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.jsonl").write_text("previous\n")
    _small_windows(monkeypatch)
    _fill_disk_after(monkeypatch, room=2)
    status, text = _run(["evaluate", "default", str(manifest), "-o", str(out), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_IO and "no space left on device" in text, text
    assert (out / "results.jsonl").read_text() == "previous\n"
    kept = [json.loads(line)["id"] for line in (out / "results.jsonl.partial").read_text().splitlines()]
    assert kept == ["u0", "u1"]


def test_evaluate_output_checked_before_decoding(tmp_path, monkeypatch, capsys):
    from nue_core.inference import runner

    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": "one"}) + "\n")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(runner, "run_transcription", lambda *a, **k: pytest.fail("decoding started"))
    status, text = _run(["evaluate", "default", str(manifest), "-o", str(tmp_path / "a-file" / "eval")],
                        monkeypatch, capsys)
    assert status == EXIT_USAGE and _says(text, str(tmp_path / "a-file")), text


def test_a_crash_mid_run_keeps_what_was_finished(clips, tmp_path, monkeypatch, capsys, caplog):
    from nue_core.inference.transcriber import Transcriber

    real_stream = Transcriber.stream

    def crashing(self, items, progress=None):
        stream = real_stream(self, items, progress)
        yield next(stream)
        raise ZeroDivisionError("a bug deep in decoding")
    monkeypatch.setattr(Transcriber, "stream", crashing)
    _small_windows(monkeypatch)
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING):
        status, text = _run(["transcribe", "default", *clips, "-o", str(out), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_INTERNAL, text
    line = next(line for line in text.splitlines() if line.startswith("error:"))
    assert "internal error (ZeroDivisionError: a bug deep in decoding)" in line and "NUE_DEBUG=1" in line
    assert not out.exists() and f"{out}.partial" in caplog.text
    assert json.loads(Path(f"{out}.partial").read_text())["source"] == clips[0]


def test_interrupt_exits_130_and_keeps_the_partial_file(clips, tmp_path, monkeypatch, capsys):
    from nue_core.inference.transcriber import Transcriber

    real_stream = Transcriber.stream

    def interrupted(self, items, progress=None):
        yield next(real_stream(self, items, progress))
        raise KeyboardInterrupt
    monkeypatch.setattr(Transcriber, "stream", interrupted)
    _small_windows(monkeypatch)
    out = tmp_path / "out.txt"
    status, text = _run(["transcribe", "default", *clips, "-o", str(out), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_INTERRUPTED and "interrupted" in text
    assert Path(f"{out}.partial").read_text().count("\n") == 1 and not out.exists()


def test_nue_debug_shows_the_traceback(monkeypatch, capsys):
    from nue_core.inference import runner

    monkeypatch.setattr(runner, "run_transcription", lambda *a, **k: 1 / 0)
    monkeypatch.setattr(sys, "argv", ["nue", "transcribe", "default", "--no-progress"])
    monkeypatch.setenv("NUE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main()


@pytest.mark.parametrize(("exc", "status", "expected"), [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.wav"), EXIT_IO, "/data/x.wav: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/out"), EXIT_IO, "/mnt/out: read-only file system"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), EXIT_INTERNAL, "UnicodeDecodeError"),
    (RecursionError("maximum recursion depth exceeded"), EXIT_INTERNAL, "RecursionError"),
    (MemoryError(), EXIT_INTERNAL, "out of memory"),
])
def test_last_resort_is_one_line(exc, status, expected, monkeypatch, capsys):
    """What a verb did not convert where it happened still ends in one line, never a traceback."""
    from nue_core.inference import runner

    def fail(*args, **kwargs):
        raise exc
    monkeypatch.setattr(runner, "run_transcription", fail)
    code, text = _run(["transcribe", "default", "--no-progress"], monkeypatch, capsys)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == status and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], text


def test_help_documents_the_exit_status(monkeypatch, capsys):
    status, text = _run(["--help"], monkeypatch, capsys)
    assert status == 0
    for code in (EXIT_USAGE, EXIT_INTERNAL, EXIT_IO, EXIT_INTERRUPTED):
        assert _says(text, f"{code} ")
    assert _says(text, "NUE_DEBUG=1")


def test_exit_statuses_are_documented():
    doc = (Path(__file__).parents[2] / "docs" / "inference.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Exit status"):]
    for code in (0, 1, EXIT_USAGE, EXIT_INTERNAL, EXIT_IO, EXIT_INTERRUPTED):
        assert f"| {code} |" in section
    assert "NUE_DEBUG=1" in section and ".partial" in section


def test_size_mismatch_in_a_model_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """A folder whose weights do not fit its config: exit 2 naming the folder (was RuntimeError, exit 1)."""
    import torch
    from safetensors.torch import load_file, save_file

    from nue_core.checkpoint import save_model
    from nue_core.composer import compose
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    folder = save_model(compose(tiny_config()), tmp_path / "model")
    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, weights, metadata={"format": "pt"})
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    status, text = _run(["transcribe", str(folder), str(wav), "--no-progress"], monkeypatch, capsys)
    assert status == EXIT_USAGE and str(folder) in text, text
