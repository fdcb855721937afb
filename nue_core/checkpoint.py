"""Save and load a model folder: ``nue.yaml`` + ``model.safetensors`` + tokenizer files.

Writes go to a temporary sibling folder that is renamed into place (``nue_core.atomic``), so a
crash mid-save never leaves a half-written model. Loading reads only YAML and safetensors: no
pickle, no remote code.

Whether the weights were trained is recorded in the safetensors header (``TRAINED_KEY``):
``save_model`` writes ``SpeechLM.is_trained``, training writes "true", and a folder saved before
the marker existed counts as trained.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nue_core.atomic import atomic_folder
from nue_core.composer import compose, export_config
from nue_core.config import ModelConfig, read_yaml_mapping
from nue_core.errors import CheckpointError, NueError, one_line
from nue_core.hub import fetch_checkpoint, looks_like_local_path  # fetch_checkpoint: also imported from here
from nue_core.model import SpeechLM
from nue_core.model_source import DEFAULT_MODEL_NAME, resolve_source
from nue_core.plugins import ModelLoader, PluginSet, get_plugins, short_error

CONFIG_FILE = "nue.yaml"
WEIGHTS_FILE = "model.safetensors"
# The embedded default: the FSDD digit recipe's model, shipped inside the package (see recipes/).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
# safetensors header entry saying whether the weights were trained ("true" / "false").
TRAINED_KEY = "nue.trained"
log = logging.getLogger(__name__)


def weights_metadata(trained: bool) -> dict[str, str]:
    """The safetensors header of a model's weights: torch format plus the trained marker."""
    return {"format": "pt", TRAINED_KEY: "true" if trained else "false"}


def read_trained(path: Path) -> bool:
    """The trained marker of a safetensors file; True when absent (folders saved before it existed)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError):
        return True  # reading the weights themselves reports the damage
    return metadata.get(TRAINED_KEY, "true") != "false"


def save_model(
    model: SpeechLM, folder: Path | str, trained: bool | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` to ``folder`` atomically (replacing an existing model folder).

    The one writer of model folders: ``nue compose -o``, a user's own loop, and training (best/,
    final/, each checkpoint's model/) all save through it.

    Args:
        model: the model; ``load(folder)`` rebuilds it.
        folder: the model folder to write (``nue.yaml``, ``model.safetensors``, tokenizer files).
        trained: record the weights as trained or not (default: ``model.is_trained``); an
            untrained model warns when it transcribes.
        state: the weights to write (default: ``model.state_dict()``); training passes the state
            dict gathered from every rank, which the local ``model`` may only hold a shard of.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    trained = getattr(model, "is_trained", False) if trained is None else trained
    state = model.state_dict() if state is None else state
    if any(t.is_meta for t in state.values()):
        raise CheckpointError("this model was composed with describe=True (meta device) and has no weights to save")
    with atomic_folder(folder) as tmp:
        export_config(model, tmp).save(tmp / CONFIG_FILE)
        # .cpu(): a no-op on CPU tensors (tied weights stay tied), a copy off a GPU.
        save_state_dict({k: v.cpu() for k, v in state.items()}, tmp / WEIGHTS_FILE, weights_metadata(trained))
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
    weights = folder / WEIGHTS_FILE
    state = read_state_dict(weights)
    check_tensors(model.state_dict(), state, weights, against=str(folder / CONFIG_FILE))
    load_checked(model, state, weights)
    model.is_trained = read_trained(weights)
    return model.eval()


# Stored dtypes a floating-point tensor of the model may come from: converting between these is
# what a dtype change does (a model saved in bf16, a released fp16 folder).
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def dtype_fits(expected: torch.dtype, found: torch.dtype) -> bool:
    """Whether a tensor stored as ``found`` can be loaded into one of dtype ``expected``.

    A float tensor takes any of float16/bfloat16/float32/float64 (or its own dtype); an integer
    buffer any integer dtype; bool and complex only their own kind. Everything else would be a
    silent reinterpretation (a bool or int8 "weight" cast to 0.0/1.0 and transcribing garbage).
    """
    if expected == found:
        return True
    if expected.is_floating_point:
        return found in _FLOAT_DTYPES
    if expected.is_complex or found.is_complex:
        return expected.is_complex and found.is_complex
    if torch.bool in (expected, found) or found.is_floating_point:
        return False
    return True  # integer into integer


def check_tensors(
    expected: Mapping[str, torch.Tensor],
    found: Mapping[str, torch.Tensor],
    path: Path,
    *,
    against: str = "the model",
    partial: bool = False,
    optional: Callable[[str], bool] = lambda key: False,
    display: Callable[[str], str] = lambda key: key,
) -> None:
    """Refuse weights that are not the model's: names, shapes and dtypes, before anything is loaded.

    Args:
        expected: the model's own tensors (``model.state_dict()``).
        found: the tensors read from ``path``.
        path: the weights file, named in the error.
        against: what the weights should match (the config file), named in the error.
        partial: ``found`` may hold a subset (an adapter); only unknown names are refused.
        optional: model tensors a file may leave out.
        display: a key as the file names it (a foreign layout renames keys on reading).

    Raises:
        CheckpointError: one line naming the file and up to five tensors at fault, each with the
            expected and the found shape or dtype.
    """
    missing = [] if partial else [display(k) for k in expected if k not in found and not optional(k)]
    unexpected = [display(k) for k in found if k not in expected]
    problems = [f"missing {_few(missing)}"] if missing else []
    problems += [f"unexpected {_few(unexpected)}"] if unexpected else []
    for key in (k for k in found if k in expected):
        want, have = expected[key], found[key]
        if tuple(have.shape) != tuple(want.shape):
            problems.append(f"{_quote(display(key))} has shape {list(have.shape)}, the model's is {list(want.shape)}")
        elif not dtype_fits(want.dtype, have.dtype):
            problems.append(f"{_quote(display(key))} is stored as {_dtype(have.dtype)}, "
                            f"the model's is {_dtype(want.dtype)}")
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(f"{path} does not match {against}: " + "; ".join(problems[:5]) + more)


def load_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(state, strict=False)`` after ``check_tensors``: whatever torch still
    refuses becomes a CheckpointError naming ``path``, never a traceback."""
    try:
        model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not load: {one_line(str(exc), 500)}") from None


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _quote(name: str) -> str:
    """A tensor name for a one-line message: quoted, escaped, and bounded (file contents are untrusted)."""
    text = repr(name)
    return text if len(text) <= 120 else text[:117] + "..."


ADAPTER_CONFIG = "adapter.yaml"
ADAPTER_WEIGHTS = "adapter.safetensors"


def save_adapter(model: SpeechLM, folder: Path | str, base: str | Path, trained: bool = True) -> Path:
    """Save only what training changed: the trainable parameters (LoRA adapters, new heads).

    ``adapter.yaml`` names the ``base`` model (a folder or preset ``load`` accepts) and the full
    config; ``adapter.safetensors`` holds the trainable tensors. ``load(folder)`` rebuilds the
    base, applies the config (injecting LoRA) and loads the tensors. ``trained``: what the folder
    records (an adapter is saved after training, so True unless you say otherwise).
    """
    import yaml

    folder = Path(folder)
    base_text = str(Path(base).resolve()) if Path(base).exists() else str(base)
    tensors = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    with atomic_folder(folder) as tmp:
        meta = {"base": base_text, "config": model.config.model_dump(mode="json", exclude_none=True)}
        (tmp / ADAPTER_CONFIG).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        save_state_dict(tensors, tmp / ADAPTER_WEIGHTS, weights_metadata(trained))
    return folder


def load_adapter_folder(folder: Path, plugins: PluginSet | None = None, **kwargs: Any) -> SpeechLM:
    """Base model + adapter from a folder written by ``save_adapter``."""
    from nue_core.trainability import reconfigure

    meta = read_yaml_mapping(folder / ADAPTER_CONFIG, "adapter config", "a mapping with 'base' and 'config'")
    if "base" not in meta or "config" not in meta:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: needs 'base' and 'config'")
    model = load(meta["base"], plugins=plugins, **kwargs)
    reconfigure(model, ModelConfig.from_dict(meta["config"], source=str(folder / ADAPTER_CONFIG)))
    weights = folder / ADAPTER_WEIGHTS
    state = read_state_dict(weights)
    check_tensors(model.state_dict(), state, weights, against=f"its base model {meta['base']}", partial=True)
    load_checked(model, state, weights)
    model.is_trained = read_trained(weights)
    return model.eval()


def _few(names: list[str]) -> str:
    return ", ".join(_quote(n) for n in names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def load(source: str | Path, *, plugins: PluginSet | None = None, **kwargs: Any) -> SpeechLM:
    """Load a model: a saved model folder, a folder in a layout a plugin knows, a preset name, or a
    Hugging Face repository id holding either kind of folder.

    Args:
        source: path to a folder; a preset name from registry.yaml (random weights); "default"
            for the embedded default model (English connected digits, trained by
            recipes/fsdd_digits); a registry ``checkpoints`` name such as "nue-asr"; or a hub id
            ``org/name`` (a string that is no local path: fetched once into the Hugging Face
            cache, found there offline). A ``Path`` is always local.
        plugins: plugin set to build with (default: the installed plugins).
        kwargs: passed to a foreign-layout loader (e.g. dtype).

    Returns:
        the model in eval mode; ``is_trained`` says whether its weights were trained.
    """
    plugins = plugins or get_plugins()
    found = resolve_source(source, plugins, accept=("default", "folder", "preset", "checkpoint", "hub"))
    if found is None:
        raise _not_a_model(source, plugins)
    if found.kind == "default":
        if not (DEFAULT_MODEL_DIR / CONFIG_FILE).exists():
            raise CheckpointError(
                f"the embedded default model is missing from {DEFAULT_MODEL_DIR}; "
                "rebuild it with the recipe in recipes/fsdd_digits"
            )
        return load_model_folder(DEFAULT_MODEL_DIR, plugins)
    if found.kind == "folder":
        assert found.path is not None
        return load_folder(found.path, plugins, **kwargs)
    if found.kind == "preset":
        return compose(found.text, plugins=plugins).eval()  # random weights: is_trained stays False
    assert found.repo_id is not None  # "checkpoint" or "hub"
    name = found.name if found.kind == "checkpoint" else None  # a registry alias is named in messages
    return load_folder(fetch_checkpoint(found.repo_id, name=name), plugins, **kwargs)


def _not_a_model(source: str | Path, plugins: PluginSet) -> CheckpointError:
    """Why ``source`` is no model: a file, a missing path, or an unknown name (listing the known ones)."""
    text, path = str(source), Path(source).expanduser()
    if path.exists():
        return CheckpointError(f"{path}: a file, not a model folder (a folder with {CONFIG_FILE}, or a released layout)")
    if isinstance(source, Path) or "/" in text or "\\" in text or looks_like_local_path(text):
        return CheckpointError(f"{path}: no such model folder")
    names = sorted([*plugins.presets, *plugins.checkpoints, DEFAULT_MODEL_NAME])
    return CheckpointError(f"'{source}' is neither a model folder nor a known name (nor a hub id org/name); "
                           f"known: {', '.join(names)}")


def load_folder(path: Path, plugins: PluginSet, **kwargs: Any) -> SpeechLM:
    """A model from a local folder: a saved model, an adapter, or a layout a loader plugin knows.

    Loaders are asked in turn (first-party first); one whose ``detect`` raises is skipped with one
    logged line and the others still get their turn. The first that claims the folder loads it:
    its own ``NueError`` passes through, anything else it raises (or a result that is not a
    SpeechLM) becomes a CheckpointError naming the loader and the folder.
    """
    if (path / CONFIG_FILE).exists():
        return load_model_folder(path, plugins)
    if (path / ADAPTER_CONFIG).exists():
        return load_adapter_folder(path, plugins, **kwargs)
    failed = []
    for loader in plugins.loaders:
        try:
            claimed = bool(loader.detect(path))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a plugin's bug must not stop the loaders after it
            failed.append(f"loader '{loader.name}' (plugin '{loader.plugin}') failed: {short_error(exc)}")
            log.warning("%s: model %s; skipped", path, failed[-1])
            continue
        if claimed:
            return _load_with(loader, path, plugins, kwargs)
    raise CheckpointError(
        f"{path}: not a model folder (no {CONFIG_FILE}) and no installed loader recognises it; "
        f"loaders: {', '.join(l.name for l in plugins.loaders) or 'none'}" + "".join(f"; {f}" for f in failed)
    )


def _load_with(loader: ModelLoader, path: Path, plugins: PluginSet, kwargs: dict[str, Any]) -> SpeechLM:
    where = f"{path}: model loader '{loader.name}' (plugin '{loader.plugin}')"
    try:
        model = loader.load(path, plugins=plugins, **kwargs)  # the caller's set, not the global one
    except (NueError, KeyboardInterrupt):  # a NueError already says what is wrong, and where
        raise
    except BaseException as exc:  # SystemExit too: a plugin must not end the command
        raise CheckpointError(f"{where} failed: {short_error(exc)}") from None
    if not isinstance(model, SpeechLM):
        raise CheckpointError(f"{where} returned {type(model).__name__}, not a SpeechLM")
    model.is_trained = True  # a foreign layout is a released checkpoint: trained weights
    return model
