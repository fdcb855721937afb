"""The released Nue-ASR checkpoint layout (``rinna/nue-asr``): load it as a SpeechLM, write it back.

The folder holds ``config.json`` (``model_type: nue_asr``, ``audio_encoder_config``,
``llm_config``, ``bridge_conv_kernel_size``, ``bridge_conv_stride``), the weights (safetensors, or
a ``.bin`` read with ``weights_only=True``) and a sentencepiece tokenizer. The module tree maps onto
the framework's own ``hubert`` encoder, ``conv`` bridge and ``gpt-neox`` decoder:

    audio_encoder.*        <-> encoder.model.*
    bridge_convs.{i}.*     <-> bridge.convs.{i}.*
    bridge_proj.*          <-> bridge.proj.*
    llm.embed_out.weight   <-> decoder.model.lm_head.weight   (transformers 4.x vs 5.x name)
    llm.*                  <-> decoder.model.*
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nue_core.config import ModelConfig
from nue_core.dtypes import resolve_dtype
from nue_core.errors import CheckpointError
from nue_core.plugins import PluginSet
from nue_hf.metadata import HF_METADATA_KEYS

MODEL_TYPE = "nue_asr"
PROMPT = {"prefix": "<s>", "postfix": "[SEP]"}
# The released code's decoding (HF generate, greedy): at least 2 and at most int(4 * s + 20.5) new
# tokens, no CTC, and no loop guard (a loop runs to the limit). Spelled out, not left to
# DecodeSpec's defaults, so a change there cannot change what a released folder transcribes.
DECODE = {"min_new_tokens": 2, "tokens_per_second": 4.0, "extra_tokens": 20, "repetition_limit": 0, "ctc_weight": 0.0}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# (released prefix, framework prefix), most specific first.
_PREFIXES = (
    ("llm.embed_out.", "decoder.model.lm_head."),
    ("audio_encoder.", "encoder.model."),
    ("bridge_convs.", "bridge.convs."),
    ("bridge_proj.", "bridge.proj."),
    ("llm.", "decoder.model."),
)
# Older torch saved weight norm as weight_g / weight_v; torch >= 2.1 uses parametrizations.
_WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}


def is_released_folder(folder: Path) -> bool:
    """True when ``folder/config.json`` declares ``model_type: nue_asr``."""
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def released_config(folder: Path) -> ModelConfig:
    """The framework config equivalent to a released folder (tokenizer read from the folder).

    Its ``decode`` section is the released code's decoding, so the folder transcribes as that code
    did unless a run overrides it (e.g. ``--repetition-limit 12``).
    """
    from transformers import GPTNeoXConfig, HubertConfig

    raw = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    kernels = list(raw.get("bridge_conv_kernel_size", [4, 4]))
    strides = list(raw.get("bridge_conv_stride", [2, 2]))
    return ModelConfig.from_dict(
        {
            "encoder": {"name": "hubert", "config": _known_fields(raw.get("audio_encoder_config") or {}, HubertConfig)},
            "bridge": {"name": "conv", "kernel_sizes": kernels, "strides": strides},
            "decoder": {"name": "gpt-neox", "config": _known_fields(raw.get("llm_config") or {}, GPTNeoXConfig),
                        "tokenizer": str(Path(folder).resolve())},
            "prompt": PROMPT,
            "decode": DECODE,
            "max_audio_seconds": 16.0,
        },
        source=f"{folder}/config.json",
    )


def _known_fields(fields: dict[str, Any], config_class: type) -> dict[str, Any]:
    """Architecture fields in today's names (e.g. transformers 4.x ``rotary_pct`` becomes rope
    parameters) without file metadata (architectures, torch_dtype, ...)."""
    normalized = config_class(**fields).to_diff_dict()
    known = set(config_class().to_dict())
    return {k: v for k, v in normalized.items() if k in known and k not in HF_METADATA_KEYS}


def released_weights_file(folder: Path) -> Path:
    """The folder's weights file: safetensors preferred, else ``pytorch_model.bin``."""
    for name in _WEIGHT_FILES:
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise CheckpointError(f"{folder}: no weights ({' or '.join(_WEIGHT_FILES)})")


def read_released_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The released state dict: safetensors preferred, else ``.bin`` with ``weights_only=True``."""
    from nue_core.checkpoint import read_state_dict

    path = released_weights_file(folder)
    if path.suffix == ".safetensors":
        return read_state_dict(path)
    try:
        # weights_only: tensors and plain containers only; a pickle that would run code is refused.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: never fall back to full unpickling
        raise CheckpointError(f"{path}: refused or unreadable ({type(exc).__name__}: {exc})") from None
    # weights_only admits any plain container: only a mapping of names to tensors is a state dict
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: not a state dict (a mapping of tensor names to tensors)")
    return state


def to_framework_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released key names -> SpeechLM key names (weight-norm variants normalised)."""
    out = {}
    for key, tensor in state.items():
        new = _framework_key(key)
        if new is None:
            raise CheckpointError(f"unexpected weight '{key}' for the Nue-ASR layout")
        out[new] = tensor
    return out


def to_released_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SpeechLM key names -> released key names."""
    return {_swap_prefix(k, [(b, a) for a, b in _PREFIXES]): v for k, v in state.items()}


def _framework_key(key: str) -> str | None:
    """A released key as the SpeechLM names it; None for a key outside the layout."""
    for old, new in _WEIGHT_NORM.items():
        if key.endswith(old):
            key = key[: -len(old)] + new
    try:
        return _swap_prefix(key, list(_PREFIXES))
    except CheckpointError:
        return None


def _released_key(key: str) -> str:
    """A SpeechLM key as the released layout names it (for messages about a tensor the file lacks)."""
    try:
        return _swap_prefix(key, [(b, a) for a, b in _PREFIXES])
    except CheckpointError:
        return key


def _swap_prefix(key: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old):]
    raise CheckpointError(f"unexpected weight '{key}' for the Nue-ASR layout")


def load_released(  # type: ignore[no-untyped-def]
    folder: Path, dtype: str = "float32", *, plugins: PluginSet | None = None, **_: Any
):
    """A SpeechLM from a released Nue-ASR folder (fp16 weights become ``dtype``, float32 by default).

    The weights are checked against ``config.json`` before loading: every tensor present, none
    extra, each of the model's shape and a float dtype; an error names the tensor as the file does.

    Args:
        folder: the released folder (``config.json``, weights, tokenizer).
        dtype: float32, bfloat16 or float16.
        plugins: the plugin set ``nue_core.load`` was given, to build the parts from (default:
            the installed plugins), so a caller's set is honoured all the way down.
    """
    from nue_core.checkpoint import check_tensors, load_checked
    from nue_core.composer import compose

    torch_dtype = resolve_dtype(dtype)
    folder = Path(folder)
    model = compose(released_config(folder), plugins=plugins, load_weights=False, base_dir=folder)
    weights = released_weights_file(folder)
    state, released_name = _framework_state(read_released_weights(folder), weights)
    # The released HuBERT may omit masked_spec_embed (only used for SpecAugment in training).
    check_tensors(model.state_dict(), state, weights, against=str(folder / "config.json"),
                  optional=lambda key: key.endswith("masked_spec_embed"),
                  display=lambda key: released_name.get(key) or _released_key(key))
    load_checked(model, state, weights)
    return model.to(torch_dtype).eval()


def _framework_state(found: dict[str, torch.Tensor], weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The released tensors under SpeechLM names, and each SpeechLM name's released name."""
    state: dict[str, torch.Tensor] = {}
    released_name: dict[str, str] = {}
    mapped = {key: _framework_key(key) for key in found}
    outside = [key for key, new in mapped.items() if new is None]
    if outside:
        more = f" (+{len(outside) - 5} more)" if len(outside) > 5 else ""
        raise CheckpointError(f"{weights}: weights outside the Nue-ASR layout: "
                              + ", ".join(repr(k)[:120] for k in outside[:5]) + more)
    for key, new in ((k, n) for k, n in mapped.items() if n is not None):
        if new in state:  # weight_g and parametrizations.weight.original0 of one weight, say
            raise CheckpointError(f"{weights}: '{released_name[new]}' and '{key}' are the same weight")
        state[new], released_name[new] = found[key], key
    return state, released_name
