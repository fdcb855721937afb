"""Training faults: non-finite losses are skipped and counted, too many stop the run with a clear
message; SIGTERM writes a checkpoint and exits cleanly (resume is covered in tests/nue_core/train)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch

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
