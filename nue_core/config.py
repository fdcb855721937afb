"""Pydantic models for a whole speech LM, loaded from and saved to YAML.

A part is a ``ComponentSpec``: the plugin ``name``, the options every part shares (trainability,
freezing, LoRA) and the plugin's own options as extra keys. The plugin's options model (with
``extra="forbid"``) validates those extra keys when the model is composed, so a typo names the key
and lists what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, field_validator,
                      model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nue_core.errors import ConfigError
from nue_core.yaml_safe import MAX_YAML_BYTES, load_yaml

M = TypeVar("M", bound=BaseModel)
# The three parts of a speech LM, in the order a ModelConfig lists them and the composer wires them.
Kind = Literal["encoder", "bridge", "decoder"]
KINDS: tuple[Kind, ...] = ("encoder", "bridge", "decoder")
BOOL_NOT_NUMBER = "a boolean is not a number (YAML reads yes/no/on/off/true/false as booleans); write the number"


def reject_bool_numbers(raw: Any, validated: BaseModel) -> BaseModel:
    """``validated`` unchanged, or a ValidationError naming every field where a boolean became a number.

    pydantic's lax mode turns ``True`` into ``1`` / ``1.0``, so ``--set lr=yes`` (YAML 1.1 reads
    ``yes`` as true) would silently train at lr 1.0. Comparing the input with the validated model
    finds those fields whatever their annotation (``float | None``, ``list[int]``,
    ``tuple[float, float]``, nested models of any plugin) without a custom type on every field.
    """
    errors = [InitErrorDetails(type=PydanticCustomError("bool_not_number", BOOL_NOT_NUMBER), loc=loc, input=value)
              for loc, value in _bools_made_numbers(raw, validated, ())]
    if errors:
        raise ValidationError.from_exception_data(type(validated).__name__, errors)
    return validated


def _bools_made_numbers(raw: Any, out: Any, loc: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(raw, bool):
        return [(loc, raw)] if isinstance(out, (int, float)) and not isinstance(out, bool) else []
    if isinstance(out, ConfigModel) and loc:
        return []  # a nested ConfigModel checked its own input
    found: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(raw, dict) and isinstance(out, BaseModel):
        for name, field in type(out).model_fields.items():
            key = field.alias or name
            if key in raw:
                found += _bools_made_numbers(raw[key], getattr(out, name), (*loc, key))
    elif isinstance(raw, dict) and isinstance(out, dict):
        for key in raw.keys() & out.keys():
            found += _bools_made_numbers(raw[key], out[key], (*loc, key))
    elif isinstance(raw, (list, tuple)) and isinstance(out, (list, tuple)) and len(raw) == len(out):
        for i, (a, b) in enumerate(zip(raw, out)):
            found += _bools_made_numbers(a, b, (*loc, i))
    return found


class ConfigModel(BaseModel):
    """Base of nue's config models: a boolean is never read as a number (``lr: yes`` is an error)."""

    @model_validator(mode="wrap")
    @classmethod
    def _no_bool_numbers(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return reject_bool_numbers(data, handler(data))


class LoraSpec(ConfigModel):
    """LoRA adapter for one part (applied through peft). ``r: 0`` means no adapter."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=0, description="rank of the update; 0 disables LoRA")
    alpha: float = Field(16.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; default: the part's own per-architecture list"
    )


class ComponentSpec(ConfigModel):
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


# Fields every part takes, whatever its plugin (the rest of a ComponentSpec are the plugin's options).
SHARED_FIELDS = frozenset(ComponentSpec.model_fields)


class PromptSpec(ConfigModel):
    """Text around the speech vectors: ``prefix + speech + postfix + target``.

    Strings are tokenised without adding special tokens (``"<s>"`` becomes the bos id when the
    tokenizer defines it as a token).
    """

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field("", description="text before the speech vectors")
    postfix: str = Field("", description="text between the speech vectors and the transcript")


class DecodeSpec(ConfigModel):
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


class ModelConfig(ConfigModel):
    """A whole speech LM."""

    model_config = ConfigDict(extra="forbid")

    encoder: ComponentSpec
    bridge: ComponentSpec
    decoder: ComponentSpec
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    ctc_weight: float = Field(0.0, ge=0.0, description="weight of the bridge's CTC loss (0 = off)")
    max_audio_seconds: float = Field(16.0, gt=0, description="longest clip the model is meant for")
    decode: DecodeSpec = Field(default_factory=DecodeSpec, description="decoding defaults (min/max new tokens)")

    @field_validator(*KINDS, mode="before")
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
        """``data`` validated; ConfigError naming ``source`` and each field at fault."""
        return validate(cls, data, source)

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
        if path.stat().st_size > MAX_YAML_BYTES:  # bounded before it is read into memory
            raise ConfigError(f"{path}: {path.stat().st_size / 2**20:.0f} MiB is too large for a {what} file "
                              f"(at most {MAX_YAML_BYTES // 2**20} MiB)")
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ConfigError(f"{path}: no such {what} file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None and empty is not None:
        data = dict(empty)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data


# pydantic error types of a number that failed a bound; with a boolean input the cause is the boolean.
_NUMBER_ERRORS = ("greater_than", "less_than", "multiple_of", "finite_number", "int_", "float_")


def validate(model: type[M], data: Any, source: str) -> M:
    """``data`` validated as ``model``; every problem is one line of a ConfigError naming ``source``.

    Args:
        model: the pydantic model class (its fields list the allowed keys on a typo).
        data: the raw mapping (from YAML, ``--set``, a plugin's registry file).
        source: where ``data`` came from (a file, "nue train settings"), the first word of the error.

    Returns:
        the model instance.

    Raises:
        ConfigError: ``format_validation_error`` of the pydantic error.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None, prefix: str = ""
) -> str:
    """One line per problem: ``source: field.path: message``, listing allowed keys for extras.

    Args:
        exc: the error ``model.model_validate`` raised.
        source: where the data came from (the first word of the message).
        model: the class that was validated; an unknown key lists its (or the nested model's)
            fields. None: unknown keys are named without the allowed ones.
        prefix: dotted path prepended to every location (the data sat under this key).
    """
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, err["loc"]) if model is not None else []
            msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif isinstance(err.get("input"), bool) and err["type"].startswith(_NUMBER_ERRORS):
            msg = BOOL_NOT_NUMBER  # `alpha: no` read as 0.0 fails `> 0`: say what really went wrong
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields of the model an unknown key at ``loc`` sits in: ``model`` or one nested in it."""
    # Walk down nested models along the error location (all but the offending key).
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        nested = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)
