"""Name -> factory + options model, for each kind of part; aliases, validation and duplicate detection.

The registry is filled by plugins (see ``nue_core.plugins``); this module knows nothing of which
plugins exist. ``new_entry`` checks what a plugin hands to ``register`` (so a malformed
registration is refused where it happens, not when some later command uses it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from nue_core.config import KINDS, SHARED_FIELDS, Kind, format_validation_error, reject_bool_numbers
from nue_core.errors import ConfigError, DuplicateComponentError, PluginError, UnknownComponentError

# Component names and aliases: what a config, a `--set` and a shell take without quoting, and what
# the case-insensitive lookup in `Registry.get` can reach (s3prl:hubert, ctc_compress, gpt-neox).
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
NAME_RULE_TEXT = "1-64 characters: lowercase letters, digits, '-', '_', '.', ':', starting with a letter or digit"
# What a component may default for the parts that use it: the shared fields but its own name.
SHARED_DEFAULTS = SHARED_FIELDS - {"name"}


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
            # every plugin's options, first- or third-party: a boolean is never read as a number
            return reject_bool_numbers(values, self.options.model_validate(values))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, where, self.options)) from None

    def build(self, values: dict[str, Any], ctx: BuildContext, where: str) -> Any:
        return self.factory(self.validate_options(values, where), ctx)


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid component name, else PluginError saying what a name must be."""
    if not isinstance(value, str):
        raise PluginError(f"{what} must be a str, got {type(value).__name__}")
    if not NAME_RULE.fullmatch(value):
        raise PluginError(f"{what} {value[:80]!r} is not a valid name ({NAME_RULE_TEXT})")
    return value


def new_entry(
    kind: Kind,
    name: object,
    factory: object,
    options: object = None,
    aliases: object = (),
    description: object = "",
    shared_defaults: object = None,
    unavailable: object = "",
    *,
    plugin: str,
    version: str = "",
) -> ComponentEntry:
    """A ComponentEntry from what a plugin passed to ``register``, every argument checked.

    Raises:
        PluginError: one line naming the component and the argument at fault.
    """
    name = check_name(name, f"{kind} name")
    where = f"{kind} '{name}'"
    if not callable(factory):
        raise PluginError(f"{where}: factory must be callable, got {type(factory).__name__}")
    if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(f"{where}: options must be a pydantic BaseModel subclass, got {_describe(options)}")
    if isinstance(aliases, (str, bytes)) or not isinstance(aliases, Iterable):
        raise PluginError(f"{where}: aliases must be a tuple or list of names, got {_describe(aliases)}")
    alias_names = tuple(check_name(a, f"{where}: alias") for a in aliases)
    for label, text in (("description", description), ("unavailable", unavailable)):
        if not isinstance(text, str):
            raise PluginError(f"{where}: {label} must be a str, got {type(text).__name__}")
    if shared_defaults is not None and not isinstance(shared_defaults, Mapping):
        raise PluginError(f"{where}: shared_defaults must be a mapping, got {_describe(shared_defaults)}")
    unknown = set(shared_defaults or {}) - SHARED_DEFAULTS
    if unknown:
        raise PluginError(f"{where}: shared_defaults may set {', '.join(sorted(SHARED_DEFAULTS))}; "
                          f"got {sorted(map(str, unknown))}")
    doc = getattr(factory, "__doc__", None)
    return ComponentEntry(
        kind=kind, name=name, factory=factory, options=options or NoOptions,  # type: ignore[arg-type]
        aliases=alias_names, plugin=plugin, version=version, shared_defaults=dict(shared_defaults or {}),
        description=description or (doc.strip().split("\n")[0] if isinstance(doc, str) else ""),
        unavailable=unavailable,  # type: ignore[arg-type]
    )


def _describe(value: object) -> str:
    text = repr(value) if not isinstance(value, type) else f"class {value.__qualname__}"
    return text if len(text) <= 60 else text[:57] + "..."


class Registry:
    """Components of each kind, with aliases resolved and duplicates refused."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, ComponentEntry]] = {k: {} for k in KINDS}
        self._aliases: dict[Kind, dict[str, str]] = {k: {} for k in KINDS}
        self.architectures: dict[str, dict[str, Any]] = {}

    def owner(self, kind: Kind, key: str) -> ComponentEntry | None:
        """The component a name or alias already belongs to (exact spelling), if any."""
        return self._owner(kind, key)

    def conflict(self, entry: ComponentEntry) -> tuple[str, ComponentEntry] | None:
        """The first of the entry's name and aliases that is already taken, and its owner."""
        for key in (entry.name, *entry.aliases):
            owner = self._owner(entry.kind, key)
            if owner is not None:
                return key, owner
        return None

    def add(self, entry: ComponentEntry) -> None:
        """Register an entry; a name or alias already taken raises DuplicateComponentError."""
        taken = self.conflict(entry)
        if taken is not None:
            key, owner = taken
            raise DuplicateComponentError(
                f"{entry.kind} name '{key}' from plugin '{entry.plugin}' is already "
                f"registered by plugin '{owner.plugin}' (as {owner.name})"
            )
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
