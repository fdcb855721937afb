"""The training input pipeline (nue_core/train/loader.py): the same batches and augmentation draws
with 0, 1 or 2 worker processes, resuming mid-epoch, unreadable items found in a worker, workers
shut down however a run ends, and SIGKILL + resume with workers ending bit-identical."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nue_core.data.augment import AugmentConfig
from nue_core.data.batching import BatchOrder
from nue_core.train.config import TrainConfig
from nue_core.train.data import UnreadableItemError, UtteranceSet
from nue_core.train.loader import BatchFeed, BatchPlan, resolve_workers
from nue_core.train.run import build_training_model
from nue_core.train.trainer import Trainer
from tests.nue_core.train.test_resume import _command, _env, _wait_for_checkpoint, _weights

AUG = AugmentConfig(speed=[0.9, 1.1], gain_db=(-3.0, 3.0), noise_snr_db=(10.0, 30.0), eq_db=3.0)
SEED, ACCUM = 7, 2


def _data(manifest: Path, skip_bad: bool = False) -> UtteranceSet:
    data, _ = UtteranceSet.from_manifest(manifest, 16000, 16.0, skip_bad=skip_bad)
    return data


def _plan(data: UtteranceSet) -> BatchPlan:
    return BatchPlan(data.durations, 1.6, SEED, None, rank=0, world_size=1)


def _stream(data: UtteranceSet, workers: int, step: int = 0, order: BatchOrder | None = None, stop: int = 9):
    feed = BatchFeed(data, AUG, _plan(data), step, order or BatchOrder(), ACCUM, stop, workers, prefetch=2)
    try:
        return list(feed)
    finally:
        feed.close()


def _add_nan_item(manifest: Path, line_id: str = "nan") -> None:
    """A float wav with NaN samples in its middle: its header and ends pass the quick check, decoding fails."""
    import soundfile as sf

    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    wave[4000:4050] = np.nan
    sf.write(str(manifest.parent / f"{line_id}.wav"), wave, 16000, subtype="FLOAT")
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"audio": f"{line_id}.wav", "text": "mid", "id": line_id}) + "\n")


def test_same_batches_and_draws_with_0_1_2_workers(tone_data) -> None:
    data = _data(tone_data[1])
    streams = {w: _stream(data, w) for w in (0, 1, 2)}
    reference = streams[0]
    assert len(reference) == 9 * ACCUM
    assert len({r.request.after[0] for r in reference}) >= 3, "the stream rolls over epochs"
    for workers, stream in streams.items():
        for a, b in zip(reference, stream, strict=True):
            assert a.request == b.request, workers
            assert a.batch.ids == b.batch.ids and a.batch.texts == b.batch.texts
            assert torch.equal(a.batch.lengths, b.batch.lengths)
            assert torch.equal(a.batch.waveforms, b.batch.waveforms), (workers, a.request)
    # ... and they are the draws of the synchronous path: generator [seed, step, rank, micro]
    fresh, changed = _data(tone_data[1]), 0
    for loaded in reference:
        r = loaded.request
        expected = fresh.batch(list(r.indices), AUG, np.random.default_rng([SEED, r.step, 0, r.micro]))
        assert torch.equal(expected.waveforms, loaded.batch.waveforms)
        plain = fresh.batch(list(r.indices))
        changed += plain.waveforms.shape != loaded.batch.waveforms.shape or not torch.equal(plain.waveforms,
                                                                                            loaded.batch.waveforms)
    assert changed == len(reference), "every batch was augmented"


def test_resume_mid_epoch_gives_the_continuation(tone_data) -> None:
    data = _data(tone_data[1])
    whole = _stream(data, 0)
    at = next(r.request for r in whole if r.request.step == 4 and r.request.micro == 0)
    assert at.before[1] > 0, "mid-epoch"
    resumed = _stream(data, 2, step=4, order=BatchOrder(*at.before))
    tail = [r for r in whole if r.request.step >= 4]
    assert [r.request for r in resumed] == [r.request for r in tail]
    assert all(torch.equal(a.batch.waveforms, b.batch.waveforms) for a, b in zip(tail, resumed, strict=True))


def test_skip_bad_item_is_reported_from_a_worker(tone_data) -> None:
    _add_nan_item(tone_data[1])
    data = _data(tone_data[1], skip_bad=True)
    bad = next(i for i, e in enumerate(data.entries) if e.id == "nan")
    stream = _stream(data, 2)
    hits = [r for r in stream if bad in r.request.indices]
    assert hits
    for loaded in hits:
        assert "nan" not in loaded.batch.ids and len(loaded.batch.ids) == len(loaded.request.indices) - 1
        assert list(loaded.unreadable) == ["nan"] and "NaN" in loaded.unreadable["nan"]
        assert f"{tone_data[1]}:13" in loaded.unreadable["nan"]
    assert all(not r.unreadable for r in stream if bad not in r.request.indices)
    assert not data.unreadable, "read in the workers: the training process's copy is untouched"


def _trainer(data_files, tmp_path: Path, workers: int, skip_bad: bool = False, **settings) -> Trainer:
    model_yaml, train, _ = data_files
    config = TrainConfig(**{"max_steps": 5, "batch_seconds": 1.6, "warmup_steps": 1, "eval_every": 100,
                            "save_every": 100, "progress": False, "tensorboard": False, "lr": 3e-3, "seed": SEED,
                            "grad_accum": ACCUM, "augment": AUG, "num_workers": workers, "skip_bad": skip_bad,
                            **settings})
    model = build_training_model(model_yaml, seed=SEED)
    return Trainer(model, config, _data(train, skip_bad), None, tmp_path / f"run{workers}")


def test_training_with_workers_equals_in_process_and_shuts_workers_down(tone_data, tmp_path: Path) -> None:
    weights, seen = {}, {}
    for workers in (0, 2):
        trainer = _trainer(tone_data, tmp_path, workers, max_steps=3)
        forward = trainer.model.forward

        def counting(*args, _workers=workers, **kwargs):
            seen[_workers] = max(seen.get(_workers, 0), len(multiprocessing.active_children()))
            return forward(*args, **kwargs)

        trainer.model.forward = counting
        assert trainer.fit().status == "finished"
        weights[workers] = {n: p.detach().clone() for n, p in trainer.raw_model.state_dict().items()}
        assert not multiprocessing.active_children(), "workers are shut down when training ends"
    assert seen == {0: 0, 2: 2}
    for name, value in weights[0].items():
        assert torch.equal(value, weights[2][name]), name


def test_error_without_skip_bad_surfaces_at_its_step(tone_data, tmp_path: Path) -> None:
    _add_nan_item(tone_data[1])
    found = {}
    for workers in (0, 2):
        trainer = _trainer(tone_data, tmp_path, workers, prefetch=4)
        bad = next(i for i, e in enumerate(trainer.train_data.entries) if e.id == "nan")
        requests = list(trainer._plan.requests(0, BatchOrder(), ACCUM, trainer.total_steps))
        first = next(r for r in requests if bad in r.indices)
        assert first.step >= 1, "a step before the bad one is trained (and read ahead of it)"
        with pytest.raises(UnreadableItemError) as stopped:
            trainer.fit()
        assert f"stopped at step {first.step} " in str(stopped.value) and "nan.wav" in str(stopped.value)
        step_start = next(r for r in requests if r.step == first.step and r.micro == 0)
        assert trainer.state.step == first.step and trainer.state.order == BatchOrder(*step_start.before)
        assert (tmp_path / f"run{workers}" / "checkpoints" / f"step-{first.step:08d}").is_dir()
        assert not multiprocessing.active_children(), "workers are shut down when training fails"
        found[workers] = first.step
    assert found[0] == found[2]


def test_skip_bad_in_workers_is_counted_in_the_state(tone_data, tmp_path: Path) -> None:
    _add_nan_item(tone_data[1])
    trainer = _trainer(tone_data, tmp_path, 2, skip_bad=True, max_steps=3)
    result = trainer.fit()
    assert result.status == "finished" and list(trainer.state.skipped_items) == ["nan"]
    assert result.skipped_items and f"{tone_data[1]}:13" in result.skipped_items[0]


def test_opening_a_loader_leaves_the_global_rng_alone(tone_data) -> None:
    data = _data(tone_data[1])
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    feed = BatchFeed(data, AUG, _plan(data), 0, BatchOrder(), ACCUM, 2, num_workers=1)
    next(feed)
    feed.close()
    assert torch.equal(torch.rand(4), expected)


def test_feed_restarts_when_the_state_moves(tone_data) -> None:
    data = _data(tone_data[1])
    feed = BatchFeed(data, AUG, _plan(data), 0, BatchOrder(), ACCUM, 2, num_workers=0)
    assert feed.expects(0, BatchOrder()) and not feed.expects(1, BatchOrder())
    first, second = next(feed), next(feed)
    assert (first.request.micro, second.request.micro) == (0, 1)
    assert feed.expects(1, BatchOrder(*second.request.after)) and not feed.expects(1, BatchOrder())
    last = [next(feed), next(feed)][-1]
    assert not feed.expects(2, BatchOrder(*last.request.after)), "past its last step: restart, not StopIteration"
    feed.close()
    assert not feed.expects(1, BatchOrder(*second.request.after))


def test_resolve_workers() -> None:
    assert resolve_workers(3, cuda=False) == 3 and resolve_workers(0, cuda=True) == 0
    assert resolve_workers(None, cuda=True, cpus=32, local_processes=1) == 4
    assert resolve_workers(None, cuda=True, cpus=32, local_processes=8) == 3
    assert resolve_workers(None, cuda=True, cpus=2, local_processes=1) == 1
    assert resolve_workers(None, cuda=True, cpus=8, local_processes=8) == 0
    assert resolve_workers(None, cuda=False, cpus=16, local_processes=1) == 2
    assert resolve_workers(None, cuda=False, cpus=2, local_processes=1) == 2
    assert resolve_workers(None, cuda=False, cpus=2, local_processes=2) == 0
    assert resolve_workers(None, cuda=False, cpus=1, local_processes=1) == 0
    with pytest.raises(ValueError):
        TrainConfig(num_workers=-1)


def _live_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` still running (zombies an init that does not reap leaves are not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _group_gone(pgid: int, timeout: float = 30.0) -> bool:
    """Whether every process of the group has exited within ``timeout`` (orphaned workers included)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _live_in_group(pgid):
            return True
        time.sleep(0.2)
    return False


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")


@pytest.mark.slow
@needs_proc
def test_sigkill_with_workers_then_resume_is_bit_identical(tone_data, tmp_path: Path) -> None:
    def _run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)

    straight = _run(_command(tone_data, tmp_path / "straight", "--set", "num_workers=0"))
    assert straight.returncode == 0, straight.stdout + straight.stderr
    killed = tmp_path / "killed"
    with_workers = ["--set", "num_workers=2", "--set", "prefetch=3"]
    proc = subprocess.Popen(_command(tone_data, killed, *with_workers), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _wait_for_checkpoint(proc, killed, 3)
    proc.send_signal(signal.SIGKILL)  # the training process only: its workers must notice and exit
    proc.wait()
    assert _group_gone(proc.pid), "the killed run's workers exited on their own"
    assert not (killed / "final").exists()
    done = _run(_command(tone_data, killed, *with_workers, "--resume"))
    assert done.returncode == 0 and "resumed from step" in done.stdout, done.stdout + done.stderr
    a, b = _weights(tmp_path / "straight" / "final"), _weights(killed / "final")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
@needs_proc
def test_sigterm_to_the_process_group_checkpoints_and_stops_the_workers(tone_data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = _command(tone_data, out, "--set", "num_workers=2")
    cmd[cmd.index("max_steps=8")] = "max_steps=400"
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    _wait_for_checkpoint(proc, out, 3)
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler does: the workers get it too
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert _group_gone(proc.pid, timeout=5.0), "no worker outlives the run"


def test_an_unreadable_noise_file_stops_the_run_naming_it(tone_data, tmp_path: Path) -> None:
    """A noise recording that cannot be decoded (found by a worker) stops training in one line
    naming the augment field and the file, with a checkpoint, however many workers read it."""
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "hum.wav").write_bytes(b"RIFF0000WAVEfmt not really audio")
    aug = AugmentConfig(noise_dir=noise, noise_snr_db=(5.0, 10.0), noise_prob=1.0)
    for workers in (0, 2):
        trainer = _trainer(tone_data, tmp_path, workers, max_steps=2, augment=aug)
        with pytest.raises(UnreadableItemError) as stopped:
            trainer.fit()
        message = str(stopped.value)
        assert "augment.noise_dir" in message and "hum.wav" in message and "stopped at step 0" in message
        assert not multiprocessing.active_children()
