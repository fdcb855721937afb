"""Training faults: non-finite losses are skipped and counted, too many stop the run with a clear
message; SIGTERM writes a checkpoint and exits cleanly (resume is covered in tests/nue_core/train);
audio that is corrupt past the part the pre-flight check reads is skipped and counted under
--skip-bad, and otherwise stops the run in one line naming the file, with a checkpoint."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.train.checkpointing import list_checkpoints
from nue_core.train.trainer import TrainingError
from tests.nue_core.train.conftest import tone_data  # noqa: F401  (fixture)
from tests.nue_core.train.test_resume import _command, _env, _wait_for_checkpoint
from tests.nue_core.train.test_trainer import _poison, _trainer


def test_nan_loss_is_skipped_and_counted(tone_data, tmp_path: Path) -> None:
    trainer = _trainer(tone_data, tmp_path)
    _poison(trainer, {1, 3})
    before = {n: p.detach().clone() for n, p in trainer.raw_model.named_parameters()}
    result = trainer.fit()
    assert result.status == "finished" and result.step == 6 and result.bad_steps == 2
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in trainer.raw_model.named_parameters())
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["bad_steps"] == 2


def test_too_many_bad_steps_stop_with_a_clear_message(tone_data, tmp_path: Path) -> None:
    trainer = _trainer(tone_data, tmp_path, max_bad_steps=1)
    _poison(trainer, set(range(10)))
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient \(max_bad_steps=1\)"):
        trainer.fit()


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tone_data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = _command(tone_data, out)
    cmd[cmd.index("max_steps=8")] = "max_steps=400"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(proc, out, 3)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "stopped by SIGTERM" in output
    last = list_checkpoints(out)[-1]
    assert int(last.name.split("-")[1]) < 400 and not (out / "final").exists()


# ---- issue 14, class 6: training validates what it will read --------------------------------------

def _late_corruption(folder: Path, seconds: float = 0.6, rate: int = 16000) -> tuple[Path, Path]:
    """A float wav with NaN samples in its middle and a FLAC that loses sync halfway: both have
    good headers and good first and last frames, so only a full decode finds what is wrong."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    holes = wave.copy()
    holes[len(wave) // 2 : len(wave) // 2 + 50] = np.nan
    sf.write(str(folder / "nan_mid.wav"), holes, rate, subtype="FLOAT")
    sf.write(str(folder / "sync.flac"), wave, rate)
    data = bytearray((folder / "sync.flac").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 400] = b"\x55" * 400
    (folder / "sync.flac").write_bytes(bytes(data))
    return folder / "nan_mid.wav", folder / "sync.flac"


def _append_late_corruption(manifest: Path) -> Path:
    nan, flac = _late_corruption(manifest.parent)
    with open(manifest, "a", encoding="utf-8") as handle:  # lines 13 and 14
        handle.write(json.dumps({"audio": nan.name, "text": "mid", "id": "nan"}) + "\n")
        handle.write(json.dumps({"audio": flac.name, "text": "mid", "id": "sync"}) + "\n")
    return manifest


def _settings(**extra) -> "TrainConfig":
    from nue_core.train.config import TrainConfig

    return TrainConfig(**{"max_steps": 8, "batch_seconds": 2.5, "warmup_steps": 1, "save_every": 100,
                          "eval_every": 100, "progress": False, "tensorboard": False, **extra})


def test_full_preflight_reads_what_training_reads(tone_data) -> None:
    from nue_core.data.manifest import read_manifest
    from nue_core.data.validate import DataError, checked_entries

    manifest = _append_late_corruption(tone_data[1])
    entries = read_manifest(manifest)
    good, _ = checked_entries(entries, str(manifest), 16.0)  # the quick check: start and end of each file
    assert len(good) == 14
    with pytest.raises(DataError) as found:
        checked_entries(entries, str(manifest), 16.0, decode_rate=16000)
    text = str(found.value)
    assert f"{manifest}:13: " in text and "NaN" in text and "nan_mid.wav" in text
    assert f"{manifest}:14: " in text and "lost sync" in text and "sync.flac" in text
    good, report = checked_entries(entries, str(manifest), 16.0, skip_bad=True, decode_rate=16000)
    assert len(good) == 12 and len(report.problems) == 2


def test_quick_preflight_reads_the_end_of_each_file(tmp_path: Path) -> None:
    import soundfile as sf

    from nue_core.data.manifest import read_manifest
    from nue_core.data.validate import DataError, checked_entries

    wave = np.full(8000, 0.1, dtype=np.float32)
    wave[-10:] = np.nan
    sf.write(str(tmp_path / "tail.wav"), wave, 16000, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "tail.wav", "text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: .*tail.wav.*NaN"):
        checked_entries(read_manifest(tmp_path / "m.jsonl"), "m.jsonl", 16.0)


def test_unreadable_audio_met_in_training_stops_in_one_line_then_skip_bad_resumes(tone_data, tmp_path) -> None:
    """Without --skip-bad: one line naming manifest line and file, a checkpoint of the steps done,
    no traceback. Resumed with --skip-bad: the bad items are skipped, counted and reported."""
    from nue_core.errors import NueError
    from nue_core.train.run import train

    model_yaml, manifest, _ = tone_data
    _append_late_corruption(manifest)
    run, said = tmp_path / "run", []
    with pytest.raises(NueError) as stopped:
        train(model_yaml, manifest, None, run, _settings(), say=said.append)
    message = str(stopped.value)
    assert "\n" not in message and "--skip-bad" in message and "--resume" in message
    assert re.search(rf"{re.escape(str(manifest))}:1[34]: .*(nan_mid.wav|sync.flac)", message), message
    assert list_checkpoints(run), "the steps done before the bad item are kept"
    said.clear()
    result = train(model_yaml, manifest, None, run, _settings(skip_bad=True), resume=True, say=said.append)
    assert result.status == "finished" and result.step == 8
    assert len(result.skipped_items) == 2
    report = "\n".join(said)
    assert "2 items could not be read during training and were skipped" in report
    assert f"{manifest}:13: " in report and f"{manifest}:14: " in report


def test_a_batch_of_only_unreadable_items_is_skipped_not_crashed(tone_data, tmp_path) -> None:
    from nue_core.train.run import train

    model_yaml, _, _ = tone_data
    folder = tmp_path / "bad"
    folder.mkdir()
    _late_corruption(folder)
    manifest = folder / "m.jsonl"
    rows = [{"audio": str(tone_data[1].parent / "1_0.wav"), "text": "low"},
            {"audio": "nan_mid.wav", "text": "mid"}, {"audio": "sync.flac", "text": "mid"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = train(model_yaml, manifest, None, tmp_path / "run", _settings(skip_bad=True, max_steps=6,
                   batch_seconds=0.7, max_batch_size=1), say=lambda *a: None)
    assert result.status == "finished" and result.step == 6 and len(result.skipped_items) == 2
    assert result.bad_steps == 0  # an empty batch is not a non-finite step


@pytest.mark.slow
def test_unreadable_audio_through_the_cli(tone_data, tmp_path) -> None:
    _append_late_corruption(tone_data[1])
    out = tmp_path / "run"
    stopped = subprocess.run(_command(tone_data, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stderr and stopped.stderr.count("\n") == 1, stopped.stderr
    assert "--skip-bad" in stopped.stderr
    done = subprocess.run(_command(tone_data, out, "--resume", "--skip-bad"), env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 items could not be read during training" in done.stdout and "finished at step 8" in done.stdout


def _corrupt(path: Path, start: float, length: int, byte: int) -> None:
    """Overwrite ``length`` bytes at a fraction ``start`` of the file's body (the header stays)."""
    data = bytearray(path.read_bytes())
    body = 64 if path.suffix == ".wav" else 120
    at = body + int(start * (len(data) - body))
    data[at : at + length] = bytes([byte]) * len(data[at : at + length])
    path.write_bytes(bytes(data))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["FLOAT", "FLAC", "PCM_16"]), start=st.floats(0.0, 1.0), length=st.integers(1, 600),
       byte=st.integers(0, 255))
def test_any_body_corruption_is_found_by_the_full_check_or_harmless(tmp_path_factory, fmt, start, length, byte):
    """80 generated corruptions (format, where, how long, which byte) of an audio file's body: the
    full pre-flight check either refuses the entry, or training reads it; reading for training
    never raises anything but the one-line UnreadableItemError, and under --skip-bad never raises."""
    import soundfile as sf

    from nue_core.data.manifest import Utterance
    from nue_core.data.validate import check_entry
    from nue_core.train.data import UnreadableItemError, UtteranceSet

    folder = tmp_path_factory.mktemp("audio")
    path = folder / ("a.flac" if fmt == "FLAC" else "a.wav")
    t = np.arange(8000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000,
             subtype="PCM_16" if fmt == "FLAC" else fmt)
    _corrupt(path, start, length, byte)
    entry = Utterance(id="a", audio=path, text="x", source="m.jsonl:1")
    checked, problem = check_entry(entry, 16.0, decode_rate=16000)
    strict = UtteranceSet([checked or entry], 16000)
    try:
        batch = strict.batch([0])
    except UnreadableItemError as exc:
        assert problem is not None, f"full check passed, training failed: {exc}"
        assert str(exc).startswith("m.jsonl:1: ") and "\n" not in str(exc)
    else:
        assert batch.ids == ["a"] and torch.isfinite(batch.waveforms).all()
    lenient = UtteranceSet([checked or entry], 16000, skip_bad=True)
    assert len(lenient.batch([0]).ids) + len(lenient.unreadable) == 1
