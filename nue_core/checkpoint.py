"""Save and load a model folder: ``nue.yaml`` + ``model.safetensors`` + tokenizer files.

Writes go to a temporary sibling folder that is renamed into place, so a crash mid-save never
leaves a half-written model. Loading reads only YAML and safetensors: no pickle, no remote code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nue_core.composer import compose, export_config
from nue_core.config import ModelConfig, read_yaml_mapping
from nue_core.errors import CheckpointError
from nue_core.model import SpeechLM
from nue_core.plugins import PluginSet, get_plugins

CONFIG_FILE = "nue.yaml"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MODEL_NAME = "default"
# The embedded default: the FSDD digit recipe's model, shipped inside the package (see recipes/).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def save_model(model: SpeechLM, folder: Path | str) -> Path:
    """Write ``model`` to ``folder`` atomically (replacing an existing model folder)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if any(p.is_meta for p in model.parameters()):
        raise CheckpointError("this model was composed with describe=True (meta device) and has no weights to save")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        export_config(model, tmp).save(tmp / CONFIG_FILE)
        save_state_dict(model.state_dict(), tmp / WEIGHTS_FILE)
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_state_dict(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Safetensors file from a state dict; tied (shared-storage) tensors are stored once each name."""
    # safetensors refuses tensors that share memory; clone so tied weights are written under every
    # name and a strict load finds them all.
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        key = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.detach().clone().contiguous() if key in seen else tensor.detach().contiguous()
        seen.add(key)
    save_file(tensors, str(path), metadata=metadata or {"format": "pt"})


def _apply_umask(folder: Path) -> None:
    """Give a finished temporary folder the permissions a plain mkdir/open would have.

    mkdtemp creates 0700 folders and safetensors writes 0600 files; a model folder is meant to be
    shared (and shipped inside the package), so the usual umask-derived modes are restored.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def replace_folder(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is swapped out first and removed after."""
    _apply_umask(src)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, with a clear error for a missing or damaged file."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); the file may be truncated") from None


def load_model_folder(folder: Path, plugins: PluginSet | None = None) -> SpeechLM:
    """A SpeechLM from a folder written by ``save_model``."""
    folder = Path(folder)
    config = ModelConfig.load(folder / CONFIG_FILE)
    model = compose(config, plugins=plugins, load_weights=False, base_dir=folder)
    state = read_state_dict(folder / WEIGHTS_FILE)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE}: "
            f"missing {_few(missing)}, unexpected {_few(unexpected)}"
        )
    return model.eval()


ADAPTER_CONFIG = "adapter.yaml"
ADAPTER_WEIGHTS = "adapter.safetensors"


def save_adapter(model: SpeechLM, folder: Path | str, base: str | Path) -> Path:
    """Save only what training changed: the trainable parameters (LoRA adapters, new heads).

    ``adapter.yaml`` names the ``base`` model (a folder or preset ``load`` accepts) and the full
    config; ``adapter.safetensors`` holds the trainable tensors. ``load(folder)`` rebuilds the
    base, applies the config (injecting LoRA) and loads the tensors.
    """
    import yaml

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    base_text = str(Path(base).resolve()) if Path(base).exists() else str(base)
    tensors = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        meta = {"base": base_text, "config": model.config.model_dump(mode="json", exclude_none=True)}
        (tmp / ADAPTER_CONFIG).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        save_state_dict(tensors, tmp / ADAPTER_WEIGHTS)
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_adapter_folder(folder: Path, plugins: PluginSet | None = None, **kwargs: Any) -> SpeechLM:
    """Base model + adapter from a folder written by ``save_adapter``."""
    from nue_core.trainability import reconfigure

    meta = read_yaml_mapping(folder / ADAPTER_CONFIG, "adapter config", "a mapping with 'base' and 'config'")
    if "base" not in meta or "config" not in meta:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: needs 'base' and 'config'")
    model = load(meta["base"], plugins=plugins, **kwargs)
    reconfigure(model, ModelConfig.from_dict(meta["config"], source=str(folder / ADAPTER_CONFIG)))
    state = read_state_dict(folder / ADAPTER_WEIGHTS)
    unknown = sorted(set(state) - set(model.state_dict()))
    if unknown:
        raise CheckpointError(f"{folder / ADAPTER_WEIGHTS}: tensors the model does not have: {_few(unknown)}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def _few(names: list[str]) -> str:
    return "none" if not names else ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def load(source: str | Path, *, plugins: PluginSet | None = None, **kwargs: Any) -> SpeechLM:
    """Load a model: a saved model folder, a folder in a layout a plugin knows, or a preset name.

    Args:
        source: path to a folder, a preset name from registry.yaml, or "default" for the
            embedded default model (English connected digits, trained by recipes/fsdd_digits).
        plugins: plugin set to build with (default: the installed plugins).
        kwargs: passed to a foreign-layout loader (e.g. dtype).
    """
    plugins = plugins or get_plugins()
    if str(source) == DEFAULT_MODEL_NAME:
        if not (DEFAULT_MODEL_DIR / CONFIG_FILE).exists():
            raise CheckpointError(
                f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; "
                "rebuild it with the recipe in recipes/fsdd_digits"
            )
        return load_model_folder(DEFAULT_MODEL_DIR, plugins)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).exists():
            return load_model_folder(path, plugins)
        if (path / ADAPTER_CONFIG).exists():
            return load_adapter_folder(path, plugins, **kwargs)
        for loader in plugins.loaders:
            if loader.detect(path):
                return loader.load(path, **kwargs)
        raise CheckpointError(
            f"{path}: not a model folder (no {CONFIG_FILE}) and no installed loader recognises it; "
            f"loaders: {', '.join(l.name for l in plugins.loaders) or 'none'}"
        )
    if str(source) in plugins.presets:
        return compose(str(source), plugins=plugins).eval()
    if str(source) in plugins.checkpoints:
        return load(fetch_checkpoint(plugins.checkpoints[str(source)]), plugins=plugins, **kwargs)
    names = sorted([*plugins.presets, *plugins.checkpoints, DEFAULT_MODEL_NAME])
    raise CheckpointError(f"'{source}' is neither a model folder nor a known name; known: {', '.join(names)}")


def fetch_checkpoint(hub_id: str) -> Path:
    """A local folder for a trained checkpoint's hub id (downloaded once into the HF cache).

    Only weights (safetensors preferred), configs and tokenizer files are fetched; nothing in the
    folder is executed.
    """
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # offline, unknown repo, no permission: one clear message
        raise CheckpointError(
            f"cannot fetch '{hub_id}' ({type(exc).__name__}: {exc}); download it where the hub is "
            "reachable and pass the local folder instead"
        ) from None
