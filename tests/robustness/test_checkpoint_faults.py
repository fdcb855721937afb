"""A crash at any point while saving leaves the previous checkpoint loadable and no debris; a model
folder whose weights are not what its config says is refused, naming the file and the tensor."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import nue_core.atomic as atomic
import nue_core.checkpoint as model_ckpt
import nue_core.train.checkpointing as train_ckpt
from nue_core.checkpoint import load, save_model, weights_metadata
from nue_core.composer import compose
from nue_core.errors import CheckpointError, NueError
from nue_core.atomic import temp_prefix
from tests.conftest import tiny_config
from tests.nue_core.train.conftest import tone_data  # noqa: F401  (fixture)
from tests.nue_core.train.test_resume import _command, _env
from tests.nue_core.train.test_trainer import _trainer
from tests.plugins.nue_hf.released_fixture import make_released_folder
from tests.plugins.nue_hf.test_released import released  # noqa: F401  (fixture)

WRITERS = ("save_state_dict", "_write_json", "replace_folder")


class Crash(Exception):
    pass


# Where the writers live: the model folder, the checkpoint's other files, the atomic rename.
WRITER_MODULES = (model_ckpt, train_ckpt, atomic)


def _crash_on_call(monkeypatch, number: int) -> None:
    """Make the ``number``-th call to any writer in WRITER_MODULES raise (simulated crash mid-save)."""
    calls = {"n": 0}
    for module in WRITER_MODULES:
        for name in WRITERS:
            if name not in vars(module):
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


@pytest.mark.parametrize("number", range(1, 9))  # model weights and rename, 5 files, the rename
def test_training_checkpoint_crash_at_any_write(tmp_path, monkeypatch, number):
    torch.manual_seed(0)
    model = compose(tiny_config())
    first = _save_training_checkpoint(tmp_path, 1, model)
    with monkeypatch.context() as m:
        _crash_on_call(m, number)
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
        _crash_on_call(m, number)
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


# --- issue 14, class 7: model folders are what they claim ------------------------------------------

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NOT_FLOATS = (torch.bool, torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved model folder and its weights as written."""
    torch.manual_seed(0)
    folder = save_model(compose(tiny_config()), tmp_path_factory.mktemp("saved") / "m")
    return folder, load_file(str(folder / "model.safetensors"))


def _with_weights(saved, tmp_path, state):
    folder = tmp_path / "m"
    shutil.copytree(saved[0], folder)
    save_file(state, str(folder / "model.safetensors"), metadata=weights_metadata(True))
    return folder


@pytest.mark.parametrize("dtype", NOT_FLOATS, ids=str)
def test_a_float_weight_stored_as_bool_or_integers_is_refused_naming_it(saved, tmp_path, dtype):
    """Before: silently cast to float (a bool folder transcribed with weights of 0 and 1)."""
    state = dict(saved[1])
    state["bridge.proj.weight"] = state["bridge.proj.weight"].to(dtype)
    folder = _with_weights(saved, tmp_path, state)
    with pytest.raises(CheckpointError) as err:
        load(folder)
    text = str(err.value)
    assert str(folder / "model.safetensors") in text and "'bridge.proj.weight'" in text
    assert str(dtype).removeprefix("torch.") in text and "float32" in text


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_a_float_weight_in_any_float_dtype_loads_converted(saved, tmp_path, dtype):
    state = {k: v.to(dtype) for k, v in saved[1].items()}
    model = load(_with_weights(saved, tmp_path, state))
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, state[name].float()), name


def test_a_wrong_shape_names_the_tensor_and_both_shapes(saved, tmp_path):
    """Before: torch's size-mismatch RuntimeError escaped (a traceback from every verb)."""
    state = dict(saved[1])
    state["decoder.model.lm_head.weight"] = torch.zeros(259, 32)
    folder = _with_weights(saved, tmp_path, state)
    with pytest.raises(CheckpointError) as err:
        load(folder)
    text = str(err.value)
    assert str(folder / "model.safetensors") in text and "'decoder.model.lm_head.weight'" in text
    assert "[259, 32]" in text and "[260, 32]" in text


@pytest.mark.parametrize("expected,found,ok", [
    (torch.int64, torch.int32, True), (torch.int64, torch.uint8, True), (torch.bool, torch.bool, True),
    (torch.int64, torch.float32, False), (torch.int64, torch.bool, False), (torch.bool, torch.int8, False),
    (torch.float32, torch.complex64, False), (torch.float32, torch.float8_e4m3fn, False),
])
def test_integer_and_bool_buffers_keep_their_kind(tmp_path, expected, found, ok):
    model = {"counter": torch.zeros(2, dtype=expected)}
    stored = {"counter": torch.zeros(2, dtype=found)}
    if ok:
        model_ckpt.check_tensors(model, stored, tmp_path / "w.safetensors")
    else:
        with pytest.raises(CheckpointError, match="'counter'"):
            model_ckpt.check_tensors(model, stored, tmp_path / "w.safetensors")


@pytest.mark.parametrize("fault", ["bool", "shape", "missing", "outside"])
def test_a_released_folder_is_checked_the_same_way(tmp_path, fault):
    """The released layout: a bool weight, a wrong shape, a missing weight or one outside the
    layout names the tensor as the file does, and the file."""
    folder = make_released_folder(tmp_path / "released")
    state = load_file(str(folder / "model.safetensors"))
    key = "llm.embed_out.weight" if fault == "missing" else "bridge_proj.weight"
    if fault == "missing":
        del state[key]
    elif fault == "outside":
        key = "other_model.weight"
        state[key] = torch.zeros(2)
    else:
        state[key] = state[key].bool() if fault == "bool" else torch.zeros(3, 5, dtype=torch.float16)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load(folder)
    text = str(err.value)
    assert str(folder / "model.safetensors") in text and f"'{key}'" in text
    if fault in ("bool", "shape"):
        assert ("bool" in text) if fault == "bool" else ("[3, 5]" in text and "[48, 32]" in text)


def test_a_released_bin_that_is_not_a_state_dict_is_refused(tmp_path):
    folder = make_released_folder(tmp_path / "released", fmt="bin")
    torch.save([torch.zeros(2)], folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load(folder)


# One damage to the state dict: (what, which tensor (index into the current names), detail).
DAMAGE = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 10_000), st.just(None)),
    st.tuples(st.just("add"), st.integers(0, 10_000), st.sampled_from(FLOATS + NOT_FLOATS)),
    st.tuples(st.just("reshape"), st.integers(0, 10_000), st.sampled_from(["grow", "shrink", "unsqueeze", "flatten"])),
    st.tuples(st.just("retype"), st.integers(0, 10_000), st.sampled_from(FLOATS + NOT_FLOATS)),
)
FILE_DAMAGE = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("header"), st.integers(0, 10_000), st.integers(0, 255)),  # one byte of length or JSON header
)


def _damage(state, damages):
    """Apply ``damages`` to ``state``; returns the names at fault (those a load must refuse)."""
    reference = dict(state)
    for what, index, detail in damages:
        names = sorted(state)
        name = names[index % len(names)]
        if what == "drop":
            del state[name]
        elif what == "add":
            state[f"extra.tensor{index}"] = torch.ones(3).to(detail)
        elif what == "reshape":
            shape = list(state[name].shape)
            if detail == "grow" or (detail == "shrink" and shape[-1] == 1):
                shape[-1] += 1
            elif detail == "shrink":
                shape[-1] -= 1
            elif detail == "flatten" and len(shape) > 1:
                shape = [state[name].numel()]
            else:
                shape = [1, *shape]
            state[name] = torch.zeros(shape, dtype=state[name].dtype)
        else:
            state[name] = state[name].to(detail)
    # at fault: missing, extra, another shape, or not a float (any float dtype is a valid folder)
    both = set(state) & set(reference)
    return (set(state) ^ set(reference)) | {n for n in both if state[n].shape != reference[n].shape
                                             or state[n].dtype not in FLOATS}


def _damage_file(path, damage):
    data = bytearray(path.read_bytes())
    if damage[0] == "truncate":
        path.write_bytes(bytes(data[: int(len(data) * damage[1])]))
    else:
        header_end = 8 + int.from_bytes(data[:8], "little")
        data[damage[1] % header_end] = damage[2]
        path.write_bytes(bytes(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damages=st.lists(DAMAGE, max_size=3), file_damage=FILE_DAMAGE)
def test_damaged_weights_load_correctly_or_raise_a_checkpoint_error_naming_file_and_tensor(saved, damages, file_damage):
    """150 generated cases: up to three tensors dropped, added, reshaped or retyped (any float or
    integer dtype, bool), then maybe the file truncated or one byte of its header overwritten.
    Loading either gives exactly the weights in the file (cast to float32) or raises CheckpointError
    naming the weights file, and the tensor too when the file itself is intact."""
    state = dict(saved[1])
    faulted = _damage(state, damages)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _with_weights(saved, Path(tmp), state)
        weights = folder / "model.safetensors"
        if file_damage is not None:
            _damage_file(weights, file_damage)
        try:
            model = load(folder)
        except CheckpointError as exc:
            text = str(exc)
            assert str(weights) in text
            assert faulted or file_damage is not None, text
            if file_damage is None:
                assert any(f"'{name}'" in text for name in faulted), text
            return
        written = load_file(str(weights))  # a header byte may have changed what the file holds
    assert not faulted or file_damage is not None
    loaded = model.state_dict()
    assert sorted(loaded) == sorted(written)
    for name, tensor in loaded.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, written[name].float()), name


# ---- issue 14, class 2: a full disk, a SIGKILL mid-save, a damaged trainer_state.json ---------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _fail_when(monkeypatch, module, name: str, condition) -> None:
    """Make ``module.name`` raise ENOSPC when ``condition(*args)`` holds (the disk fills up then)."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        if condition(*args):
            _enospc()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _in(part: str):
    return lambda *args: any(part in str(a) for a in args if isinstance(a, (str, Path)))


@pytest.mark.parametrize("what, module, name, where", [
    ("checkpoints/step-00000004", train_ckpt, "save_state_dict", _in(".step-00000004.tmp-")),
    ("checkpoints/step-00000004", train_ckpt, "_write_json", _in(".step-00000004.tmp-")),
    ("run/final", model_ckpt, "save_state_dict", _in(".final.tmp-")),
])
def test_full_disk_stops_cleanly_in_one_line_keeping_the_previous_checkpoint(
    tone_data, tmp_path, monkeypatch, what, module, name, where
):
    """Training stops (it does not go on computing steps it cannot save): the one line says which
    write failed, that the disk is full, and which checkpoint is kept; nothing half-written remains."""
    trainer = _trainer(tone_data, tmp_path, save_every=2, keep_last=3)
    _fail_when(monkeypatch, module, name, where)
    with pytest.raises(NueError) as stopped:
        trainer.fit()
    message = str(stopped.value)
    assert "\n" not in message and "Traceback" not in message
    assert what in message and "no space left on device" in message and "--resume" in message
    run = tmp_path / "run"
    latest = train_ckpt.latest_checkpoint(run)
    expected = "step-00000002" if "step-00000004" in what else "step-00000006"
    assert latest.name == expected and f"kept {expected}" in message
    monkeypatch.undo()
    train_ckpt.load_checkpoint(latest)  # intact
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_full_disk_while_logging_metrics_stops_cleanly(tone_data, tmp_path, monkeypatch):
    from nue_core.train import logs

    trainer = _trainer(tone_data, tmp_path, save_every=2, log_every=1)
    appends = []

    def full_open(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            appends.append(path)
            if len(appends) == 3:  # the line of step 3; a failed write names no file
                _enospc()
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(logs, "open", full_open, raising=False)
    with pytest.raises(NueError, match=r"metrics.jsonl: cannot write \(no space left on device.*kept step-00000002"):
        trainer.fit()


@pytest.mark.slow
def test_full_disk_through_the_cli_is_one_line_without_traceback(tone_data, tmp_path):
    """`nue train` on a disk that fills up before the second checkpoint: one line, no traceback, the
    status of an error (2; 74 where the CLI gives output errors their own)."""
    out = tmp_path / "run"
    cmd = _command(tone_data, out)
    script = ("import errno, nue_core.train.checkpointing as c\n"
              "real = c.save_state_dict\n"
              "def full(state, path, *a, **k):\n"
              "    if '.step-00000006.tmp-' in str(path): raise OSError(errno.ENOSPC, 'No space left on device')\n"
              "    return real(state, path, *a, **k)\n"
              "c.save_state_dict = full\n"
              "from nue_core.cli import main; main()\n")
    done = subprocess.run([cmd[0], "-c", script, *cmd[3:]], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode in (2, 74), done.stdout + done.stderr  # 74: an output error, where the CLI says so
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "no space left on device" in done.stderr and "kept step-00000003" in done.stderr
    assert [p.name for p in train_ckpt.list_checkpoints(out)] == ["step-00000003"]


def _leftovers(run: Path) -> tuple[list[Path], list[Path]]:
    """A run folder with what crashed saves leave behind, and things that only look similar."""
    ckpts = run / "checkpoints"
    (ckpts / "step-00000003").mkdir(parents=True)
    (ckpts / "step-00000003" / "trainer_state.json").write_text("{}")
    stale = [ckpts / ".step-00000006.tmp-k2j3h4", ckpts / ".step-00000003.old-4242", run / ".best.tmp-abc",
             run / ".final.tmp-x_1", run / ".final.old-77", run / ".best.old-9"]
    for path in stale:
        (path / "model").mkdir(parents=True)
        (path / "model" / "model.safetensors").write_bytes(b"partial")
    kept = [ckpts / "notes.txt", ckpts / ".step-backup", ckpts / "step-00000003.tmp-1", run / ".mytmp-1",
            run / ".step-00000006.tmp-abc", ckpts / ".best.tmp-abc", run / "data" / ".best.tmp-abc",
            ckpts / "step-00000003" / ".hidden.tmp-1", run / ".best.tmp", run / ".final-old-1"]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not nue's")
    return stale, kept


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    from nue_core.train.run_folder import remove_stale_temporaries

    run = tmp_path / "run"
    stale, kept = _leftovers(run)
    removed = remove_stale_temporaries(run)
    assert sorted(removed) == sorted(str(p.relative_to(run)) for p in stale)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "not nue's" for p in kept)
    assert (run / "checkpoints" / "step-00000003").is_dir()


suffixes = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)


@st.composite
def leftover_names(draw):
    """(folder, name) as nue's own atomic saves name their temporaries."""
    where = draw(st.sampled_from(["run", "checkpoints"]))
    entry = draw(st.sampled_from(["best", "final"])) if where == "run" else f"step-{draw(st.integers(0, 10**8)):08d}"
    if draw(st.booleans()):
        return where, temp_prefix(entry) + draw(suffixes)  # tempfile.mkdtemp(prefix=temp_prefix(entry))
    return where, f".{entry}.old-{draw(st.integers(1, 2**22))}"  # replace_folder's swap-out (aside_name)


@st.composite
def lookalike_names(draw):
    """(folder, name) near a leftover's name but not one: a user's files, or one in the wrong folder."""
    where, name = draw(leftover_names())
    how = draw(st.sampled_from(["drop_dot", "no_dash", "other_word", "wrong_folder", "any"]))
    if how == "drop_dot":
        return where, name[1:]
    if how == "no_dash":
        return where, name.replace(".tmp-", ".tmp").replace(".old-", ".old")
    if how == "other_word":
        return where, name.replace("best", "bestx").replace("final", "finale").replace("step-", "steps-")
    if how == "wrong_folder":
        return ("checkpoints" if where == "run" else "run"), name
    return where, draw(st.text("abc.-_tmpold", min_size=1, max_size=12).filter(lambda n: n not in (".", "..")))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stale=st.lists(leftover_names(), max_size=4), other=st.lists(lookalike_names(), max_size=6))
def test_cleaning_removes_exactly_nues_own_leftovers(tmp_path_factory, stale, other):
    """100 generated run folders, each with leftovers named as nue's savers name them and with
    lookalikes (a dot dropped, no dash, another word, the other folder, random names): cleaning
    removes every leftover and nothing else."""
    from nue_core.train.run_folder import remove_stale_temporaries

    run = tmp_path_factory.mktemp("run")
    places = {"run": run, "checkpoints": run / "checkpoints"}
    places["checkpoints"].mkdir()
    stale_paths = {places[w] / n for w, n in stale}
    other_paths = {places[w] / n for w, n in other} - stale_paths
    for path in other_paths:
        if not path.exists():
            path.write_text("keep")
    for path in stale_paths:
        path.mkdir(exist_ok=True)
    lookalike_leftovers = {p for p in other_paths if p in stale_paths}
    remove_stale_temporaries(run)
    assert not any(p.exists() for p in stale_paths)
    kept = other_paths - lookalike_leftovers
    assert all(p.exists() for p in kept), sorted(p.name for p in kept if not p.exists())


def test_resume_after_a_kill_mid_save_cleans_up_and_says_so(tone_data, tmp_path):
    """A SIGKILL while a checkpoint is written leaves ``.step-*.tmp-*``; the next start removes it."""
    from nue_core.train.config import TrainConfig
    from nue_core.train.run import train

    model_yaml, manifest, _ = tone_data
    config = TrainConfig(max_steps=2, batch_seconds=2.5, warmup_steps=1, save_every=2, eval_every=100,
                         progress=False, tensorboard=False)
    run = tmp_path / "run"
    train(model_yaml, manifest, None, run, config, say=lambda *a: None)
    half = run / "checkpoints" / ".step-00000004.tmp-q8x2"
    (half / "model").mkdir(parents=True)
    (half / "model" / "model.safetensors").write_bytes(b"half a tensor")
    said: list[str] = []
    train(model_yaml, manifest, None, run, config.model_copy(update={"max_steps": 3}), resume=True, say=said.append)
    assert not half.exists()
    notes = [line for line in said if ".step-00000004.tmp-q8x2" in line]
    assert len(notes) == 1 and "\n" not in notes[0], said
    assert "resumed from step 2" in said


def _trained_checkpoints(tone_data, tmp_path):
    trainer = _trainer(tone_data, tmp_path, save_every=2, keep_last=3)
    trainer.fit()
    return trainer, train_ckpt.list_checkpoints(tmp_path / "run")


@pytest.mark.parametrize("damage", [
    "{}", '{"step": 6, "order": {"epoch": 0, "posit', "[]", "null", "",
    '{"step": "6", "order": {"epoch": 0, "position": 2}, "bad_steps": 0, "best": null, "best_step": null}',
])
def test_damaged_latest_trainer_state_falls_back_to_the_previous_checkpoint(tone_data, tmp_path, damage):
    trainer, found = _trained_checkpoints(tone_data, tmp_path)
    assert [p.name for p in found] == ["step-00000002", "step-00000004", "step-00000006"]
    (found[-1] / "trainer_state.json").write_text(damage)
    fresh = _trainer(tone_data, tmp_path)
    said: list[str] = []
    assert fresh.resume(say=said.append)
    assert fresh.state.step == 4
    assert len(said) == 1 and "step-00000006" in said[0] and "trainer_state.json" in said[0], said
    assert "step-00000004" in said[0] and "\n" not in said[0]


def test_no_intact_checkpoint_is_a_clear_error(tone_data, tmp_path):
    _, found = _trained_checkpoints(tone_data, tmp_path)
    for folder in found:
        (folder / "trainer_state.json").write_text('{"step": 1}')
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*checkpoints.*--overwrite") as info:
        _trainer(tone_data, tmp_path).resume(say=lambda line: None)
    assert "\n" not in str(info.value)


def _nested(inner):
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5)),
    _nested, max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_trainer_state_is_a_checkpoint_error_or_harmless(tmp_path_factory, data):
    """150 generated damages of a real trainer_state.json (truncation at any byte, a key removed,
    any JSON value in any place, a whole other document): reading it for a resume either works or
    raises CheckpointError naming the file; never KeyError/TypeError/ValueError, and the global
    random state is untouched until the checkpoint is known to be intact."""
    from nue_core.train.trainer import TrainerState

    global _CHECKPOINT
    if _CHECKPOINT is None:
        _CHECKPOINT = _save_training_checkpoint(tmp_path_factory.mktemp("ckpt"), 3, compose(tiny_config()))
        state = json.loads((_CHECKPOINT / "trainer_state.json").read_text())
        state.update({"order": {"epoch": 0, "position": 3}, "bad_steps": 0, "best": None, "best_step": None})
        (_CHECKPOINT / "trainer_state.json").write_text(json.dumps(state))
    original = (_CHECKPOINT / "trainer_state.json").read_text()
    doc = json.loads(original)
    kind = data.draw(st.sampled_from(["truncate", "drop", "replace", "nested", "whole"]))
    if kind == "truncate":
        text = original[: data.draw(st.integers(0, len(original) - 1))]
    elif kind == "drop":
        doc.pop(data.draw(st.sampled_from(sorted(doc))))
        text = json.dumps(doc)
    elif kind == "replace":
        doc[data.draw(st.sampled_from(sorted(doc) + ["extra"]))] = data.draw(json_values)
        text = json.dumps(doc)
    elif kind == "nested":
        where = data.draw(st.sampled_from([("order", "epoch"), ("order", "position"), ("rng", "numpy"), ("rng", "python")]))
        doc[where[0]][where[1]] = data.draw(json_values)
        text = json.dumps(doc)
    else:
        text = json.dumps(data.draw(json_values))
    folder = _CHECKPOINT.parent / "step-00000003"
    (folder / "trainer_state.json").write_text(text)
    before = torch.get_rng_state()
    try:
        loaded = train_ckpt.read_checkpoint(folder)
        TrainerState.from_dict(loaded["trainer"], source=str(folder / "trainer_state.json"))
    except CheckpointError as exc:
        assert "trainer_state.json" in str(exc) and "\n" not in str(exc)
    finally:
        (folder / "trainer_state.json").write_text(original)
    assert torch.equal(before, torch.get_rng_state())


_CHECKPOINT: Path | None = None
