"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``RUN_DIR/checkpoints/step-00000100/``::

    model/                 a loadable model folder (nue.yaml, model.safetensors, tokenizer files)
    optimizer.safetensors  every tensor of the optimizer state, keys ``state.<param>.<name>``
    optimizer.json         param groups and non-tensor state values
    scheduler.json         the LR scheduler's state_dict
    rng.safetensors        torch CPU (and CUDA) generator states
    trainer_state.json     step, data order, counters, best metric, numpy and python RNG states

It is written to a temporary sibling and renamed (``nue_core.atomic``), so a crash mid-save leaves
the previous checkpoint as the latest one (the temporary is removed at the next start:
``run_folder``); an old checkpoint is renamed away before it is deleted, so a crash mid-delete
never leaves half of one. Its ``model/`` is written by ``nue_core.checkpoint.save_model``, the one
writer of model folders (best/ and final/ too).
Reading checks every file before anything is restored (``read_checkpoint``), so a damaged
checkpoint is a ``CheckpointError`` naming the file, and the caller can fall back to an older one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nue_core.atomic import atomic_folder, discard_folder
from nue_core.checkpoint import WEIGHTS_FILE, read_state_dict, save_model, save_state_dict
from nue_core.errors import CheckpointError, OutputError, one_line
from nue_core.train.run_folder import CHECKPOINTS, STEP_PREFIX

PREFIX = STEP_PREFIX
STATE_FILE = "trainer_state.json"


class RunWriteError(OutputError):
    """A write into the run folder failed (full disk, quota, permissions); training stopped there."""


def write_failure(run_dir: Path, target: Path, exc: OSError, step: int) -> RunWriteError:
    """The one-line error for a failed write of ``target``: why, and which checkpoint is kept.

    Args:
        run_dir: the run folder (its latest complete checkpoint is named).
        target: what could not be written (``checkpoints/step-00000600``, ``metrics.jsonl`` ...).
        exc: the ``OSError`` met (ENOSPC: "no space left on device").
        step: the optimizer steps done when training stopped.
    """
    latest = latest_checkpoint(run_dir)
    kept = (f"kept {latest.name}, the latest intact checkpoint: continue from it with --resume" if latest
            else "no checkpoint had been written yet: start again with --resume")
    return RunWriteError.from_oserror(target, exc, note=f"training stopped at step {step}; {kept}")


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into (tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                values.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "values": values}


def optimizer_from_files(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``optimizer_to_files``."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = tensor
    for pid, entry in rest.get("values", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": rest["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(torch generator states as tensors, numpy and python states as JSON)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, gauss_next = random.getstate()
    json_part = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(pystate), gauss_next],
    }
    return tensors, json_part


def set_rng_state(tensors: dict[str, torch.Tensor], json_part: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = json_part["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, pystate, gauss_next = json_part["python"]
    random.setstate((version, tuple(pystate), gauss_next))


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any], scheduler_state: dict[str, Any], trainer_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``RUN_DIR/checkpoints/step-<step>`` atomically and delete all but the last ``keep_last``.

    Raises:
        OSError: the write failed (full disk ...); the temporary is removed, earlier checkpoints stay.
    """
    final = Path(run_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"
    with atomic_folder(final) as tmp:
        save_model(model, tmp / "model", trained=True, state=model_state)  # type: ignore[arg-type]
        tensors, rest = optimizer_to_files(optimizer_state)
        save_state_dict(tensors, tmp / "optimizer.safetensors")
        _write_json(tmp / "optimizer.json", rest)
        _write_json(tmp / "scheduler.json", scheduler_state)
        rng_tensors, rng_json = rng_state()
        save_state_dict(rng_tensors, tmp / "rng.safetensors")
        _write_json(tmp / STATE_FILE, {**trainer_state, "step": step, "rng": rng_json})
    for old in list_checkpoints(run_dir)[:-keep_last]:
        discard_folder(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are not listed)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Everything a checkpoint holds, each file checked, with no side effect.

    Returns:
        ``model`` (state dict), ``optimizer`` (state dict), ``scheduler`` (state dict), ``trainer``
        (trainer_state.json without ``rng``), ``rng`` (``(tensors, json)`` for ``set_rng_state``).

    Raises:
        CheckpointError: a file is missing, truncated or not what it should be (one line naming it).
    """
    folder = Path(folder)
    state_file = folder / STATE_FILE
    trainer = _read_json(state_file)  # the small files first: a damaged one costs no weight reading
    _check_step(folder, trainer)
    rng = (read_state_dict(folder / "rng.safetensors"), trainer.pop("rng", None))
    _check_rng(state_file, *rng)
    rest, scheduler = _read_json(folder / "optimizer.json"), _read_json(folder / "scheduler.json")
    try:
        optimizer = optimizer_from_files(read_state_dict(folder / "optimizer.safetensors"), rest)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{folder / 'optimizer.json'}: not an optimizer state ({_short(exc)})") from None
    model = read_state_dict(folder / "model" / WEIGHTS_FILE)
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "trainer": trainer, "rng": rng}


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """``read_checkpoint`` without ``rng``: the RNG states are restored (the caller resumes right after)."""
    loaded = read_checkpoint(folder)
    set_rng_state(*loaded.pop("rng"))
    return loaded


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: cannot read checkpoint ({_short(exc)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _check_step(folder: Path, trainer: dict[str, Any]) -> None:
    """A checkpoint's ``step`` is the number in its folder's name (else the file is not this one's)."""
    number = folder.name[len(PREFIX):]
    if not (folder.name.startswith(PREFIX) and number.isdigit()):
        return  # a folder given by hand, named freely
    step = trainer.get("step")
    if type(step) is not int or step != int(number):  # type(): True == 1 must not pass
        found = "missing" if "step" not in trainer else f"{step!r}"[:40]
        raise CheckpointError(f"{folder / STATE_FILE}: step: {found}, expected {int(number)} (the folder's step)")


def _check_rng(path: Path, tensors: dict[str, torch.Tensor], json_part: Any) -> None:
    """Apply the states to fresh generators: what would fail in ``set_rng_state`` fails here, harmlessly."""
    try:
        torch.Generator().set_state(tensors["torch_cpu"])
        kind, keys, pos, has_gauss, gauss = json_part["numpy"]
        np.random.RandomState().set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, pystate, gauss_next = json_part["python"]
        random.Random().setstate((version, tuple(pystate), gauss_next))
        if gauss_next is not None and not isinstance(gauss_next, float):  # setstate does not check it
            raise TypeError(f"gauss_next is {type(gauss_next).__name__}")
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: rng: not a saved random state ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    """An exception as one short line (messages of numpy or json may span lines)."""
    return one_line(str(exc), 200) or type(exc).__name__


def _write_json(path: Path, data: Any) -> None:
    try:
        text = json.dumps(data, indent=1)
    except TypeError as exc:
        raise CheckpointError(f"{path.name}: state is not JSON-serialisable ({exc})") from None
    path.write_text(text, encoding="utf-8")
