"""A crash at any point while saving leaves the previous checkpoint loadable and no debris."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

import nue_core.checkpoint as model_ckpt
import nue_core.train.checkpointing as train_ckpt
from nue_core.checkpoint import load, save_model
from nue_core.composer import compose
from nue_core.errors import CheckpointError
from tests.conftest import tiny_config
from tests.plugins.nue_hf.released_fixture import make_released_folder
from tests.plugins.nue_hf.test_released import released  # noqa: F401  (fixture)

WRITERS = ("save_state_dict", "_write_json", "replace_folder")


class Crash(Exception):
    pass


def _crash_on_call(monkeypatch, module, number: int) -> None:
    """Make the ``number``-th call to any writer of ``module`` raise (simulated crash mid-save)."""
    calls = {"n": 0}
    for name in WRITERS:
        if not hasattr(module, name):
            continue
        original = getattr(module, name)

        def wrapper(*args, _original=original, **kwargs):
            calls["n"] += 1
            if calls["n"] == number:
                raise Crash(f"simulated crash at write {number}")
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


def _save_training_checkpoint(run_dir, step, model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 8000), torch.tensor([8000]), model.target_ids(["a"])).loss.backward()
    opt.step()
    return train_ckpt.save_checkpoint(run_dir, step, model, model.state_dict(), opt.state_dict(),
                                      {"last_epoch": step}, {"note": "x"}, keep_last=3)


@pytest.mark.parametrize("number", range(1, 8))
def test_training_checkpoint_crash_at_any_write(tmp_path, monkeypatch, number):
    torch.manual_seed(0)
    model = compose(tiny_config())
    first = _save_training_checkpoint(tmp_path, 1, model)
    with monkeypatch.context() as m:
        _crash_on_call(m, train_ckpt, number)
        try:
            _save_training_checkpoint(tmp_path, 2, model)
        except Crash:
            assert train_ckpt.latest_checkpoint(tmp_path) == first
        else:  # fewer writes than `number`: the save completed
            assert train_ckpt.latest_checkpoint(tmp_path).name.endswith("2")
    state = train_ckpt.load_checkpoint(train_ckpt.latest_checkpoint(tmp_path))
    assert set(state) == {"model", "optimizer", "scheduler", "trainer"}
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("number", range(1, 3))  # save_state_dict, replace_folder
def test_model_folder_crash_at_any_write(tmp_path, monkeypatch, number):
    save_model(compose(tiny_config()), tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with monkeypatch.context() as m:
        _crash_on_call(m, model_ckpt, number)
        with pytest.raises(Crash):
            save_model(compose(tiny_config()), tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    load(tmp_path / "m")


def test_truncated_training_checkpoint_is_a_clear_error(tmp_path):
    path = _save_training_checkpoint(tmp_path, 1, compose(tiny_config()))
    opt = path / "optimizer.safetensors"
    opt.write_bytes(opt.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        train_ckpt.load_checkpoint(path)


def test_pickle_payload_is_refused_and_never_runs(tmp_path, released):
    folder = make_released_folder(tmp_path / "evil", fmt="bin")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"x": Payload()}, handle)
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load(folder)
    assert not marker.exists()
