"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``RUN_DIR/checkpoints/step-00000100/``::

    model/                 a loadable model folder (nue.yaml, model.safetensors, tokenizer files)
    optimizer.safetensors  every tensor of the optimizer state, keys ``state.<param>.<name>``
    optimizer.json         param groups and non-tensor state values
    scheduler.json         the LR scheduler's state_dict
    rng.safetensors        torch CPU (and CUDA) generator states
    trainer_state.json     step, data order, counters, best metric, numpy and python RNG states

It is written to a temporary sibling and renamed, so a crash mid-save leaves the previous
checkpoint as the latest one.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nue_core.checkpoint import (
    CONFIG_FILE, WEIGHTS_FILE, read_state_dict, replace_folder, save_state_dict, weights_metadata,
)
from nue_core.errors import CheckpointError

CHECKPOINTS = "checkpoints"
PREFIX = "step-"
STATE_FILE = "trainer_state.json"


def write_model_folder(model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """A model folder (config + weights + tokenizer) from a SpeechLM and its (gathered) state dict.

    The weights are recorded as trained: training wrote them (see ``nue_core.checkpoint.TRAINED_KEY``).
    """
    from nue_core.composer import export_config

    folder.mkdir(parents=True, exist_ok=True)
    export_config(model, folder).save(folder / CONFIG_FILE)  # type: ignore[arg-type]
    save_state_dict({k: v.detach().cpu() for k, v in state.items()}, folder / WEIGHTS_FILE, weights_metadata(True))


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
    """Write ``RUN_DIR/checkpoints/step-<step>`` atomically and delete all but the last ``keep_last``."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        write_model_folder(model, model_state, tmp / "model")
        tensors, rest = optimizer_to_files(optimizer_state)
        save_state_dict(tensors, tmp / "optimizer.safetensors")
        _write_json(tmp / "optimizer.json", rest)
        _write_json(tmp / "scheduler.json", scheduler_state)
        rng_tensors, rng_json = rng_state()
        save_state_dict(rng_tensors, tmp / "rng.safetensors")
        _write_json(tmp / STATE_FILE, {**trainer_state, "step": step, "rng": rng_json})
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are not listed)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Everything a checkpoint holds: ``model`` (state dict), ``optimizer``, ``scheduler``, ``trainer``.

    The RNG states are restored as a side effect (the caller resumes right after).
    """
    folder = Path(folder)
    try:
        trainer = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        optimizer = optimizer_from_files(
            read_state_dict(folder / "optimizer.safetensors"),
            json.loads((folder / "optimizer.json").read_text(encoding="utf-8")),
        )
        scheduler = json.loads((folder / "scheduler.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder}: cannot read checkpoint ({exc})") from None
    set_rng_state(read_state_dict(folder / "rng.safetensors"), trainer.pop("rng"))
    model = read_state_dict(folder / "model" / WEIGHTS_FILE)
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "trainer": trainer}


def _write_json(path: Path, data: Any) -> None:
    try:
        text = json.dumps(data, indent=1)
    except TypeError as exc:
        raise CheckpointError(f"{path.name}: state is not JSON-serialisable ({exc})") from None
    path.write_text(text, encoding="utf-8")
