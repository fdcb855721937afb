"""Pydantic models for a whole speech LM, loaded from and saved to YAML.

A part is a ``ComponentSpec``: the plugin ``name``, the options every part shares (trainability,
freezing, LoRA) and the plugin's own options as extra keys. The plugin's options model (with
``extra="forbid"``) validates those extra keys when the model is composed, so a typo names the key
and lists what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nue_core.errors import ConfigError


class LoraSpec(BaseModel):
    """LoRA adapter for one part (applied through peft). ``r: 0`` means no adapter."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=0, description="rank of the update; 0 disables LoRA")
    alpha: float = Field(16.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; default: the part's own per-architecture list"
    )


class ComponentSpec(BaseModel):
    """One part (encoder, bridge or decoder): plugin name, shared options, plugin options as extras."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="registered component name or alias, e.g. hubert, conv, gpt-neox")
    trainable: bool = Field(True, description="train this part's weights (False freezes it all)")
    freeze: list[str] = Field(
        default_factory=list,
        description="named groups of the part (e.g. feature_extractor) or parameter-name prefixes to freeze",
    )
    lora: LoraSpec | None = Field(
        None, description="LoRA adapter; when set, only the adapter (and unfrozen new heads) trains"
    )

    @property
    def options(self) -> dict[str, Any]:
        """The plugin's own options (everything that is not a shared field)."""
        return dict(self.model_extra or {})

    def uses_lora(self) -> bool:
        return self.lora is not None and self.lora.r > 0


class PromptSpec(BaseModel):
    """Text around the speech vectors: ``prefix + speech + postfix + target``.

    Strings are tokenised without adding special tokens (``"<s>"`` becomes the bos id when the
    tokenizer defines it as a token).
    """

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field("", description="text before the speech vectors")
    postfix: str = Field("", description="text between the speech vectors and the transcript")


class DecodeSpec(BaseModel):
    """The model's own decoding defaults (a run may still override them).

    Limits are the released Nue-ASR's: at least 2 new tokens, at most
    ``int(tokens_per_second * seconds + extra_tokens + 0.5)``. The loop guard is nue's own: the
    released code had none (a released folder loads with ``repetition_limit: 0``), but a model
    trained here stops an output that repeats one short n-gram 12 times, since such an output is
    a decoding loop, not speech, and would otherwise run to the limit (time and insertions).
    """

    model_config = ConfigDict(extra="forbid")

    min_new_tokens: int = Field(2, ge=0, description="eos is not allowed before this many tokens")
    tokens_per_second: float = Field(4.0, gt=0, description="max new tokens per second of audio")
    extra_tokens: int = Field(20, ge=0, description="max new tokens added to every clip")
    repetition_limit: int = Field(
        12, ge=0,
        description="stop an output that ends in one n-gram (n <= 4) repeated this many times (loop guard); 0 = off",
    )
    ctc_weight: float = Field(
        0.0, ge=0.0, le=1.0,
        description="joint CTC/decoder scoring weight (needs a bridge CTC head over the decoder vocabulary); 0 = decoder alone",
    )


class ModelConfig(BaseModel):
    """A whole speech LM."""

    model_config = ConfigDict(extra="forbid")

    encoder: ComponentSpec
    bridge: ComponentSpec
    decoder: ComponentSpec
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    ctc_weight: float = Field(0.0, ge=0.0, description="weight of the bridge's CTC loss (0 = off)")
    max_audio_seconds: float = Field(16.0, gt=0, description="longest clip the model is meant for")
    decode: DecodeSpec = Field(default_factory=DecodeSpec, description="decoding defaults (min/max new tokens)")

    @field_validator("encoder", "bridge", "decoder", mode="before")
    @classmethod
    def _name_only_shorthand(cls, value: Any) -> Any:
        # `encoder: hubert` is accepted as shorthand for `encoder: {name: hubert}`.
        return {"name": value} if isinstance(value, str) else value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<config>") -> "ModelConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, source)) from None

    @classmethod
    def load(cls, path: Path | str) -> "ModelConfig":
        data = read_yaml_mapping(path, "config", "a mapping with encoder/bridge/decoder keys")
        return cls.from_dict(data, source=str(path))


def read_yaml_mapping(path: Path | str, what: str, expected: str, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mapping a YAML file holds; every problem is a ConfigError naming the file.

    Args:
        what: the kind of file, for "no such <what> file".
        expected: what the file must hold, for "expected <expected>".
        empty: what an empty file means (None: an empty file is an error).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: no such {what} file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None and empty is not None:
        data = dict(empty)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data


def format_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``source: field.path: message``, listing allowed keys for extras."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(exc.title, err["loc"])
            msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


_MODELS: dict[str, type[BaseModel]] = {}


def register_options_model(model: type[BaseModel]) -> None:
    """Remember an options model so its allowed keys can be listed in error messages."""
    _MODELS[model.__name__] = model


def _allowed_fields(title: str, loc: tuple[Any, ...]) -> list[str]:
    model = _MODELS.get(title) or {m.__name__: m for m in (ModelConfig, PromptSpec, LoraSpec, DecodeSpec)}.get(title)
    if model is None:
        return []
    # Walk down nested models along the error location (all but the offending key).
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        nested = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)
