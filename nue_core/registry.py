"""Name -> factory + options model, for each kind of part; aliases and duplicate detection.

The registry is filled by plugins (see ``nue_core.plugins``); this module knows nothing of which
plugins exist.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nue_core.config import format_validation_error, register_options_model
from nue_core.errors import ConfigError, DuplicateComponentError, UnknownComponentError

Kind = Literal["encoder", "bridge", "decoder"]
KINDS: tuple[Kind, ...] = ("encoder", "bridge", "decoder")


class NoOptions(BaseModel):
    """Options model of a component that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class BuildContext:
    """What a factory may need besides its own options.

    Attributes:
        load_weights: read pretrained weights from ``checkpoint`` options. False when the model is
            only described (meta device) or when weights come from a saved model folder.
        base_dir: folder that relative paths in options resolve against (a saved model folder).
        architectures: known architecture configs by checkpoint id, for offline description.
        in_dim, out_dim: bridge input/output widths (encoder output_dim, decoder embed_dim).
        input_frame_rate_hz: encoder frames per second (for bridges that think in seconds).
        ctc_vocab_size: size V of the token vocabulary a CTC head labels (the head adds a blank at index V).
        tokenizer: the decoder's tokenizer, when a bridge needs it.
    """

    load_weights: bool = True
    base_dir: Path | None = None
    architectures: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_dim: int | None = None
    out_dim: int | None = None
    input_frame_rate_hz: float | None = None
    ctc_vocab_size: int | None = None
    tokenizer: Any = None

    def resolve_path(self, value: str | Path) -> Path:
        """A path option as given, or relative to ``base_dir`` when that file exists."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None and (self.base_dir / path).exists():
            return self.base_dir / path
        return path

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise ConfigError(f"the composer did not supply '{name}' to this component")
        return value


@dataclass
class ComponentEntry:
    """One registered component."""

    kind: Kind
    name: str
    factory: Callable[[BaseModel, BuildContext], Any]
    options: type[BaseModel]
    aliases: tuple[str, ...] = ()
    description: str = ""
    plugin: str = "?"
    version: str = ""
    shared_defaults: dict[str, Any] = field(default_factory=dict)
    # why it cannot be built in this environment, with the fix (empty: it can); kept apart from
    # ``description`` so generated docs do not depend on which extras are installed
    unavailable: str = ""

    def validate_options(self, values: dict[str, Any], where: str) -> BaseModel:
        try:
            return self.options.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where)) from None

    def build(self, values: dict[str, Any], ctx: BuildContext, where: str) -> Any:
        return self.factory(self.validate_options(values, where), ctx)


class Registry:
    """Components of each kind, with aliases resolved and duplicates refused."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, ComponentEntry]] = {k: {} for k in KINDS}
        self._aliases: dict[Kind, dict[str, str]] = {k: {} for k in KINDS}
        self.architectures: dict[str, dict[str, Any]] = {}

    def add(self, entry: ComponentEntry) -> None:
        """Register an entry; a name or alias already taken raises DuplicateComponentError."""
        for key in (entry.name, *entry.aliases):
            owner = self._owner(entry.kind, key)
            if owner is not None:
                raise DuplicateComponentError(
                    f"{entry.kind} name '{key}' from plugin '{entry.plugin}' is already "
                    f"registered by plugin '{owner.plugin}' (as {owner.name})"
                )
        register_options_model(entry.options)
        self._entries[entry.kind][entry.name] = entry
        for alias in entry.aliases:
            self._aliases[entry.kind][alias] = entry.name

    def remove(self, entry: ComponentEntry) -> None:
        """Take an entry and its aliases out again (rolling back a plugin that failed midway)."""
        self._entries[entry.kind].pop(entry.name, None)
        for alias in entry.aliases:
            if self._aliases[entry.kind].get(alias) == entry.name:
                del self._aliases[entry.kind][alias]

    def add_alias(self, kind: Kind, alias: str, target: str) -> None:
        """An extra alias (from registry.yaml) for an installed component; silently skipped if absent."""
        if target in self._entries[kind] and self._owner(kind, alias) is None:
            self._aliases[kind][alias] = target

    def _owner(self, kind: Kind, key: str) -> ComponentEntry | None:
        name = self._aliases[kind].get(key, key)
        return self._entries[kind].get(name)

    def get(self, kind: Kind, name: str) -> ComponentEntry:
        """Look up a component by name or alias, with a 'did you mean' error on a miss."""
        entry = self._owner(kind, name) or self._owner(kind, name.lower())
        if entry is not None:
            return entry
        known = self.names(kind, with_aliases=True)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        installed = ", ".join(self.names(kind)) or "none"
        raise UnknownComponentError(f"unknown {kind} '{name}'{hint} Installed: {installed}")

    def names(self, kind: Kind, with_aliases: bool = False) -> list[str]:
        names = list(self._entries[kind])
        if with_aliases:
            names += list(self._aliases[kind])
        return sorted(names)

    def entries(self, kind: Kind) -> list[ComponentEntry]:
        return [self._entries[kind][n] for n in sorted(self._entries[kind])]

    def aliases_of(self, kind: Kind, name: str) -> list[str]:
        return sorted(a for a, t in self._aliases[kind].items() if t == name)
