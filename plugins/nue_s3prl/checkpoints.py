"""Read s3prl's converted HuBERT / wav2vec 2.0 checkpoints without running pickled code.

A converted checkpoint (``s3prl/upstream/{hubert,wav2vec2}/convert.py``) is a torch file holding
a plain dict: ``task_cfg`` and ``model_cfg`` (dicts of fairseq config fields), ``model_weight``
(a state dict) and, for HuBERT, ``dictionaries_symbols`` (label sets of pre-training only).

s3prl's own loader calls ``torch.load`` without ``weights_only`` and then ``eval()``s the
``conv_feature_layers`` string of the config. Here the file is read with ``weights_only=True``
and that string is parsed by a tiny arithmetic evaluator that accepts only int tuples, lists,
``+`` and ``*`` (``"[(512,10,5)] + [(512,3,2)] * 4"``); s3prl then only ever sees a plain literal.
"""

from __future__ import annotations

import ast
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from nue_core.errors import CheckpointError, ConfigError
from nue_core.registry import BuildContext
from nue_s3prl.compat import import_s3prl

Family = Literal["hubert", "wav2vec2"]
REQUIRED_KEYS = ("task_cfg", "model_cfg", "model_weight")
ConvLayers = list[tuple[int, int, int]]


def parse_conv_layers(text: str) -> ConvLayers:
    """``conv_feature_layers`` text -> [(channels, kernel, stride), ...], without ``eval``.

    Raises:
        ConfigError: anything but int literals, tuples, lists, ``+`` and ``*``.
    """
    try:
        value = _arith(ast.parse(str(text), mode="eval").body)
    except (SyntaxError, ValueError, TypeError) as exc:
        raise ConfigError(f"conv_feature_layers {text!r} is not a list of (dim, kernel, stride): {exc}") from None
    ok = isinstance(value, list) and value and all(
        isinstance(t, tuple) and len(t) == 3 and all(isinstance(v, int) and v > 0 for v in t) for t in value
    )
    if not ok:
        raise ConfigError(f"conv_feature_layers {text!r} is not a non-empty list of (dim, kernel, stride)")
    return list(value)


def _arith(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_arith(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _arith(node.left), _arith(node.right)
        if isinstance(node.op, ast.Mult) and (type(left) is int) == (type(right) is int):
            raise ValueError("'*' repeats a list by an int")
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"{type(node).__name__} is not allowed")


def resolve_checkpoint(checkpoint: str, ctx: BuildContext) -> Path:
    """A local file for ``checkpoint``: a path (relative to ``ctx.base_dir`` if there) or a URL, downloaded by s3prl."""
    if checkpoint.startswith(("http://", "https://")):
        download = import_s3prl("s3prl.util.download")
        return Path(download._urls_to_filepaths(checkpoint))
    path = ctx.resolve_path(checkpoint)
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"s3prl checkpoint '{path}' {where}; give the path or URL of a converted s3prl .pt file")
    return path


def load_checkpoint(path: Path, weights: bool = True) -> dict[str, Any]:
    """The checkpoint dict, read with ``weights_only=True`` (memory-mapped when weights are not needed).

    Raises:
        CheckpointError: unreadable, not a dict, holds pickled objects, or lacks a required key.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=not weights)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing s3prl checkpoint '{path}': it holds pickled objects other than tensors and plain "
            f"containers, and loading it could run code ({str(exc).splitlines()[0]})"
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read s3prl checkpoint '{path}': {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"s3prl checkpoint '{path}' holds a {type(state).__name__}, expected a dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"s3prl checkpoint '{path}' lacks key(s) {missing}; is it a converted s3prl checkpoint?")
    return state


def _config_classes(family: Family) -> tuple[type, type, type]:
    """(model config, task config, model class) of s3prl's own implementation."""
    if family == "hubert":
        mod = import_s3prl("s3prl.upstream.hubert.hubert_model")
        return mod.HubertConfig, mod.HubertPretrainingConfig, mod.HubertModel
    mod = import_s3prl("s3prl.upstream.wav2vec2.wav2vec2_model")
    return mod.Wav2Vec2Config, mod.AudioPretrainingConfig, mod.Wav2Vec2Model


def _dataclass(cls: type, fields: dict[str, Any], where: str, strict: bool) -> Any:
    """cls(**fields); ``strict`` refuses unknown fields (user configs), else they are dropped (checkpoints)."""
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(fields) - allowed)
    if strict and unknown:
        raise ConfigError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
    return cls(**{k: v for k, v in fields.items() if k in allowed})


def build_model(
    family: Family, model_cfg: dict[str, Any], task_cfg: dict[str, Any], strict: bool = False
) -> tuple[nn.Module, Any, Any]:
    """s3prl's HubertModel / Wav2Vec2Model from config dicts (random weights), with its config objects."""
    cfg_cls, task_cls, model_cls = _config_classes(family)
    fields = dict(model_cfg)
    layers = parse_conv_layers(fields.get("conv_feature_layers", cfg_cls.__dataclass_fields__["conv_feature_layers"].default))
    fields["conv_feature_layers"] = repr(layers)  # s3prl eval()s it: hand it a plain literal only
    if family == "hubert":
        fields.setdefault("label_rate", 50.0)  # the one field without a default; pre-training only
    cfg = _dataclass(cfg_cls, fields, "s3prl model config", strict)
    task = _dataclass(task_cls, dict(task_cfg), "s3prl task config", strict)
    if getattr(cfg, "layer_type", "transformer") != "transformer":
        raise ConfigError(f"s3prl {family} layer_type {cfg.layer_type!r} is not supported; only 'transformer'")
    model = model_cls(cfg, task, [None]) if family == "hubert" else model_cls(cfg)
    return model, cfg, task


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, type(None))):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value)  # str and s3prl's string enums


def config_fields(cfg: Any) -> dict[str, Any]:
    """An s3prl config dataclass as plain YAML-able fields (what ``build_model`` takes back)."""
    return {k: _plain(v) for k, v in asdict(cfg).items()}
