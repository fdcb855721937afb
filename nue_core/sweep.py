"""Ablations as config permutations: a base config plus axes (or named variants), each cell
trained and evaluated with the existing trainer and evaluator in its own run folder.

A sweep file::

    base: tiny                      # preset, model YAML (relative to this file) or inline mapping
    train: {max_steps: 200, lr: 1e-3}
    data: {train: train.jsonl, valid: valid.jsonl, test: test.jsonl}
    axes:                           # cartesian product over dotted paths; `train.` paths go to
      bridge.name: [conv, ctc-compress]   # the TrainConfig, the rest to the model config
      decoder.lora.r: [0, 8]
    # or: variants: [{name: frozen-gpt, set: {decoder.trainable: false}}, ...]
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nue_core.config import KINDS, ModelConfig, read_yaml_mapping, validate
from nue_core.errors import ConfigError
from nue_core.overrides import set_dotted

TRAIN_PREFIX = "train."


class Variant(BaseModel):
    """One named cell given explicitly: dotted overrides of the base."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="cell name (also its run folder)")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted overrides; train.* go to the TrainConfig")


class SweepData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: str = Field(description="training manifest (JSONL or Kaldi folder), relative to the sweep file")
    valid: str | None = Field(None, description="validation manifest")
    test: str = Field(description="manifest every cell is evaluated on")


class Sweep(BaseModel):
    """A sweep file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", description="title of the results table")
    base: str | dict[str, Any] = Field(description="preset name, model YAML path, or an inline model config")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields shared by every cell")
    data: SweepData
    language: str | None = Field(None, description="text normalisation for CER/WER (en, ja, none; default: detect)")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted path -> values (cartesian product)")
    variants: list[Variant] = Field(default_factory=list, description="explicit named cells (instead of axes)")

    @model_validator(mode="after")
    def _axes_or_variants(self) -> "Sweep":
        if bool(self.axes) == bool(self.variants):
            raise ValueError("give either 'axes' or 'variants'")
        if any(not values for values in self.axes.values()):
            raise ValueError("every axis needs at least one value")
        return self


@dataclass
class Cell:
    """One validated configuration of a sweep."""

    name: str
    overrides: dict[str, Any]
    model_config: ModelConfig
    train_config: Any  # nue_core.train.config.TrainConfig

    @property
    def model_overrides(self) -> dict[str, Any]:
        """The overrides that change the model config (not the TrainConfig)."""
        return {k: v for k, v in self.overrides.items() if not k.startswith(TRAIN_PREFIX)}


def base_source(sweep: Sweep, root: Path) -> str | None:
    """The base model as ``nue train`` takes it (a YAML path or preset), None for an inline base."""
    if isinstance(sweep.base, dict):
        return None
    return str(root / sweep.base) if (root / sweep.base).is_file() else sweep.base


def load_sweep(path: Path | str) -> tuple[Sweep, Path]:
    """Read and validate a sweep file; returns it and the folder its relative paths start from."""
    path = Path(path)
    data = read_yaml_mapping(path, "sweep", "a sweep mapping (base, data, axes or variants)")
    return validate(Sweep, data, str(path)), path.resolve().parent  # a typo lists the allowed keys


def cell_name(overrides: dict[str, Any]) -> str:
    """Readable, filesystem-safe name: ``bridge.name=conv,decoder.lora.r=8``."""
    text = ",".join(f"{k}={_short(v)}" for k, v in overrides.items()) or "base"
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def _short(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def base_model_dict(sweep: Sweep, root: Path) -> dict[str, Any]:
    from nue_core.composer import resolve_config

    source = base_source(sweep, root)
    if source is None:
        return dict(sweep.base)  # type: ignore[arg-type]
    return resolve_config(source).model_dump(exclude_none=True)


def validate_options(config: ModelConfig) -> None:
    """Check every part's plugin options against its options model (without building anything)."""
    from nue_core.plugins import get_plugins

    registry = get_plugins().registry
    for kind in KINDS:
        spec = getattr(config, kind)
        registry.get(kind, spec.name).validate_options(spec.options, where=f"{kind} '{spec.name}' options")


def expand(sweep: Sweep, root: Path) -> list[Cell]:
    """Every cell of the sweep, validated (model config and train config), in a stable order."""
    from nue_core.composer import resolve_config
    from nue_core.train.config import TrainConfig

    base = base_model_dict(sweep, root)
    if sweep.variants:
        plan = [(v.name, dict(v.set)) for v in sweep.variants]
    else:
        keys = list(sweep.axes)
        plan = [(None, dict(zip(keys, combo))) for combo in itertools.product(*sweep.axes.values())]
    cells, seen = [], set()
    for given, overrides in plan:
        name = given or cell_name(overrides)
        if name in seen:
            raise ConfigError(f"sweep: two cells are named '{name}'")
        seen.add(name)
        model_data, train_data = base, dict(sweep.train)
        for key, value in overrides.items():
            if key.startswith(TRAIN_PREFIX):
                train_data = set_dotted(train_data, key[len(TRAIN_PREFIX):], value)
            else:
                model_data = set_dotted(model_data, key, value)
        try:
            model_config = resolve_config(ModelConfig.from_dict(model_data, source=f"sweep cell '{name}'"))
            validate_options(model_config)
        except ConfigError as exc:
            raise ConfigError(f"sweep cell '{name}': {exc}") from None
        train_config = TrainConfig.from_dict(train_data, source=f"sweep cell '{name}' train")
        cells.append(Cell(name, overrides, model_config, train_config))
    return cells
