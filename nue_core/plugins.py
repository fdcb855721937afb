"""Plugin manager: every plugin, first-party included, comes from the entry-point group ``nue``.

A plugin that fails to import or to register is recorded with its name and error in
``PluginSet.broken`` and skipped; the others still load. An installed package that does not load
(torchaudio built for another torch) is settled before any plugin is imported, so it cannot take
a plugin down; what is wrong with it is kept, one line each, in ``PluginSet.problems``.

A plugin cannot hurt another (docs/plugins.md, "Conflicts and failures"):

- First-party plugins (the entry points of this distribution, ``nue-asr``) register first, then
  the registry files' aliases, then third-party plugins in name order. A name, alias, loader,
  export format or architecture already taken is a conflict: the later plugin is disabled as a
  whole (all of its registrations or none) with one line naming both plugins. So first-party
  names always win, and between two third-party plugins the one later by name loses, whatever
  order the entry points are discovered in.
- Every ``register`` call is checked (names, callables, options model, aliases); an invalid one
  disables its plugin with one line, even if the plugin catches the error.
- Any exception a plugin raises at import or in a hook, ``SystemExit`` and other
  ``BaseException``s included, disables that plugin only. ``KeyboardInterrupt`` still stops the
  program: Ctrl-C belongs to the user.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from nue_core import hookspecs
from nue_core.config import read_yaml_mapping
from nue_core.errors import ConfigError, PluginError, one_line
from nue_core.registry import KINDS, ComponentEntry, Registry, check_name, new_entry
from nue_core.torchaudio_guard import guard_torchaudio

ENTRY_POINT_GROUP = "nue"
# The distribution whose entry points are first-party, and the plugin modules it ships (for plugin
# objects handed to ``load_plugins`` directly, which have no distribution).
FIRST_PARTY_DISTRIBUTION = "nue-asr"
FIRST_PARTY_MODULES = ("nue_bridges.plugin", "nue_fbank.plugin", "nue_hf.plugin", "nue_s3prl.plugin")
_HOOK_KIND = {"register_encoders": "encoder", "register_bridges": "bridge", "register_decoders": "decoder"}
# Every hook hookspecs.py declares, in its order (the order a plugin's hooks run and are listed):
# read from the spec markers, so a new hook there needs no second list here.
_HOOKS = tuple(name for name, obj in vars(hookspecs).items()
               if hasattr(obj, f"{hookspecs.hookspec.project_name}_spec"))


@dataclass
class PluginInfo:
    """One plugin as loaded: where it came from, what it implements, and any error."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    first_party: bool = False


@dataclass
class ModelLoader:
    """A loader for a foreign model-folder layout (see hook ``register_model_loaders``)."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[..., Any]
    plugin: str


@dataclass
class ModelExporter:
    """A writer of a foreign model-folder layout (see hook ``register_exporters``)."""

    name: str
    export: Callable[..., Any]
    plugin: str


@dataclass
class PluginSet:
    """The loaded plugins and the registry they filled, plus presets and defaults from YAML."""

    registry: Registry
    plugins: list[PluginInfo]
    loaders: list[ModelLoader] = field(default_factory=list)  # first-party first: they detect first
    exporters: dict[str, ModelExporter] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    component_defaults: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # installed packages that do not load: what, and the fix
    architecture_plugins: dict[str, str] = field(default_factory=dict)  # checkpoint id -> plugin that registered it

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def load_plugins(
    plugins: Iterable[tuple[str, ModuleType | object]] | None = None,
    registry_files: Iterable[Path] | None = None,
    *,
    first_party_only: bool = False,
) -> PluginSet:
    """Load plugins and fill a fresh registry.

    Args:
        plugins: explicit ``(name, plugin_object)`` pairs, registered first-party ones first, the
            rest in the order given; default: the ``nue`` entry points (first-party, then by name).
        registry_files: YAML files with aliases, presets and architectures; default:
            the packaged ``registry.yaml``.
        first_party_only: of the entry points, only those of this distribution (``nue-asr``);
            third-party ones are not even imported (the generated docs describe nue-asr alone).

    Returns:
        the plugin set; a plugin that failed is in ``broken``, not raised.
    """
    # before any plugin imports transformers, which imports an installed torchaudio unguarded
    torchaudio = guard_torchaudio()
    files = list(registry_files) if registry_files is not None else [default_registry_file()]
    tables = [(path, read_registry_file(path)) for path in files]
    if plugins is None:
        candidates = _entry_point_plugins(first_party_only)
    else:
        candidates = [(_explicit_plugin(name, obj), obj) for name, obj in plugins]
    candidates.sort(key=lambda c: not c[0].first_party)  # stable: keeps name (or given) order within each
    infos: list[PluginInfo] = []
    result = PluginSet(registry=Registry(), plugins=infos, problems=[torchaudio.problem] if torchaudio.problem else [])
    pm = pluggy.PluginManager("nue")
    pm.add_hookspecs(hookspecs)
    aliases_applied = False
    for info, obj in candidates:
        if not info.first_party and not aliases_applied:
            # the registry files' aliases of first-party components are first-party names too
            _apply_aliases(result, tables)
            aliases_applied = True
        infos.append(info)
        if info.error is None:  # imported
            _contained(info, "registration failed", lambda: pm.register(obj, name=info.name))
        if info.error is None:
            _run_plugin_hooks(pm, info, obj, result)
    for path, data in tables:
        apply_registry_data(result, path, data)
    return result


def _contained(info: PluginInfo, what: str, call: Callable[[], Any]) -> Any:
    """``call()``; anything it raises but Ctrl-C becomes ``info.error`` (a plugin's failure is its own)."""
    try:
        return call()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a plugin must not end the user's command
        info.error = f"{what}: {short_error(exc)}"
        return None


def _entry_point_plugins(first_party_only: bool = False) -> list[tuple[PluginInfo, Any]]:
    """Each entry point in name order, imported; one that fails to import comes with its error set."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = (ep.dist.name or "") if ep.dist else ""
        version = (ep.dist.version or "") if ep.dist else ""
        first_party = re.sub(r"[-_.]+", "-", dist).lower() == FIRST_PARTY_DISTRIBUTION
        if first_party_only and not first_party:
            continue
        found.append((PluginInfo(ep.name, ep.value, dist, version, first_party=first_party), ep))
    # name, then distribution: the order never depends on how the entry points were discovered
    found.sort(key=lambda pair: (pair[0].name, pair[0].distribution, pair[0].module))
    return [(info, _contained(info, "import failed", ep.load)) for info, ep in found]


def _explicit_plugin(name: str, obj: object) -> PluginInfo:
    """A plugin object handed to ``load_plugins``: first-party when it is one of this distribution's modules."""
    info = PluginInfo(name, getattr(obj, "__name__", type(obj).__name__))
    if isinstance(obj, ModuleType) and obj.__name__ in FIRST_PARTY_MODULES:
        info.first_party, info.distribution = True, FIRST_PARTY_DISTRIBUTION
        try:
            info.version = metadata.version(FIRST_PARTY_DISTRIBUTION)
        except metadata.PackageNotFoundError:  # a source checkout that is not installed
            pass
    return info


@dataclass
class _Staged:
    """What one plugin registered: committed only when all of it is valid and nothing clashes."""

    components: list[ComponentEntry] = field(default_factory=list)
    architectures: dict[str, dict[str, Any]] = field(default_factory=dict)
    loaders: list[ModelLoader] = field(default_factory=list)
    exporters: list[ModelExporter] = field(default_factory=list)
    invalid: str | None = None  # the first invalid registration, kept even if the plugin catches the error


def _run_plugin_hooks(pm: pluggy.PluginManager, info: PluginInfo, plugin: object, result: PluginSet) -> None:
    """Call each hook of one plugin; stage its registrations and commit them only if all succeed."""
    staged = _Staged()
    for hook_name in _HOOKS:
        if not any(h.plugin_name == info.name for h in getattr(pm.hook, hook_name).get_hookimpls()):
            continue
        info.hooks.append(hook_name)
        impl = _contained(info, f"{hook_name} failed", lambda: getattr(plugin, hook_name))
        if impl is not None:
            _contained(info, f"{hook_name} failed", lambda: impl(register=_registrar(hook_name, info, staged)))
        if staged.invalid is not None:
            info.error = f"{hook_name}: invalid registration: {staged.invalid}"
        if info.error is not None:
            return
    info.error = _commit(staged, info, result)


def _registrar(hook_name: str, info: PluginInfo, staged: _Staged) -> Callable[..., None]:
    """The ``register`` callback one hook receives; each call is checked before it is staged."""

    def refuse(exc: PluginError) -> None:
        staged.invalid = staged.invalid or str(exc)
        raise exc

    def register_component(name: Any, factory: Any, options: Any = None, aliases: Any = (),
                           description: Any = "", shared_defaults: Any = None, unavailable: Any = "") -> None:
        kind = _HOOK_KIND[hook_name]
        try:
            entry = new_entry(kind, name, factory, options, aliases, description,  # type: ignore[arg-type]
                              shared_defaults, unavailable, plugin=info.name, version=info.version)
        except PluginError as exc:
            refuse(exc)
        staged.components.append(entry)

    def register_architecture(checkpoint: Any, config: Any) -> None:
        if not isinstance(checkpoint, str) or not checkpoint or not isinstance(config, Mapping):
            refuse(PluginError(f"architecture needs a checkpoint id (str) and a config mapping, "
                               f"got {type(checkpoint).__name__} and {type(config).__name__}"))
        staged.architectures[checkpoint] = dict(config)

    def register_loader(name: Any, detect: Any, load: Any) -> None:
        try:
            check_name(name, "model loader name")
            if not callable(detect) or not callable(load):
                raise PluginError(f"model loader '{name}': detect and load must be callable")
        except PluginError as exc:
            refuse(exc)
        staged.loaders.append(ModelLoader(name, detect, load, info.name))

    def register_exporter(name: Any, export: Any) -> None:
        try:
            check_name(name, "export format name")
            if not callable(export):
                raise PluginError(f"export format '{name}': export must be callable")
        except PluginError as exc:
            refuse(exc)
        staged.exporters.append(ModelExporter(name, export, info.name))

    if hook_name in _HOOK_KIND:
        return register_component
    return {"register_architectures": register_architecture, "register_model_loaders": register_loader,
            "register_exporters": register_exporter}[hook_name]


def _commit(staged: _Staged, info: PluginInfo, result: PluginSet) -> str | None:
    """Add a plugin's registrations to ``result``; the first conflict, as one line, if any (then nothing is added)."""
    conflict = _find_conflict(staged, info, result)
    if conflict is not None:
        return conflict
    for entry in staged.components:
        result.registry.add(entry)
    result.registry.architectures.update(staged.architectures)
    result.architecture_plugins.update(dict.fromkeys(staged.architectures, info.name))
    result.loaders.extend(staged.loaders)
    result.exporters.update({e.name: e for e in staged.exporters})
    return None


def _find_conflict(staged: _Staged, info: PluginInfo, result: PluginSet) -> str | None:
    """What of ``staged`` is already taken (by an earlier plugin, or twice by this one), naming both plugins."""
    own: set[tuple[str, str]] = set()  # (kind, name or alias) this plugin registers
    for entry in staged.components:
        for key in (entry.name, *entry.aliases):
            owner = result.registry.owner(entry.kind, key)
            if owner is not None:
                return _conflict_line(f"{entry.kind} name '{key}'", owner.plugin, info, result,
                                      f"as {owner.kind} '{owner.name}'")
            if (entry.kind, key) in own:
                return _conflict_line(f"{entry.kind} name '{key}'", info.name, info, result)
            own.add((entry.kind, key))
    loaders = {l.name: l.plugin for l in result.loaders}
    exporters = {name: e.plugin for name, e in result.exporters.items()}
    for what, names, taken in (("model loader", [l.name for l in staged.loaders], loaders),
                               ("export format", [e.name for e in staged.exporters], exporters)):
        for name in names:
            if name in taken:
                return _conflict_line(f"{what} '{name}'", taken[name], info, result)
            taken[name] = info.name
    for ckpt, config in staged.architectures.items():
        owner = result.architecture_plugins.get(ckpt)
        if owner is not None and result.registry.architectures.get(ckpt) != config:  # the same config twice is no conflict
            return _conflict_line(f"architecture '{ckpt}'", owner, info, result, "with a different config")
    return None


def _conflict_line(what: str, owner: str, info: PluginInfo, result: PluginSet, detail: str = "") -> str:
    """One line: what clashed, both plugins, which rule decided, and that the later plugin is disabled."""
    if owner == info.name:
        return f"{what} is registered twice by plugin '{info.name}'; the plugin is disabled"
    first_party = any(p.name == owner and p.first_party for p in result.plugins)
    rule = "first-party names win" if first_party else "the plugin loaded first keeps it (plugins load by name)"
    return (f"{what} from plugin '{info.name}' is already registered by {'first-party ' * first_party}plugin "
            f"'{owner}'{f' ({detail})' if detail else ''}; {rule}, so plugin '{info.name}' is disabled")


def short_error(exc: BaseException) -> str:
    """One line for an exception: type, message (whitespace folded, bounded) and where it was raised."""
    try:
        message = one_line(str(exc), 300)
    except Exception:  # a hostile __str__ must not break the report about it
        message = "<unprintable message>"
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}{': ' + message if message else ''}{where}"


def default_registry_file() -> Path:
    """The packaged registry.yaml (inside nue_core in a wheel, at the repo root in a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "registry.yaml", here.parent / "registry.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError("registry.yaml not found next to nue_core; the installation is incomplete")


def read_registry_file(path: Path) -> dict[str, Any]:
    """One registry YAML file, its top-level keys and kinds checked (ConfigError naming the file)."""
    data = read_yaml_mapping(path, "registry", "a mapping of aliases, architectures, checkpoints, defaults, presets", empty={})
    unknown = set(data) - {"aliases", "defaults", "architectures", "presets", "checkpoints"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; "
            "allowed: aliases, architectures, checkpoints, defaults, presets"
        )
    for section in ("aliases", "defaults"):
        for kind in data.get(section) or {}:
            if kind not in KINDS:
                raise ConfigError(f"{path}: {section}.{kind}: kind must be one of {', '.join(KINDS)}")
    return data


def _apply_aliases(plugin_set: PluginSet, tables: list[tuple[Path, dict[str, Any]]]) -> None:
    for _path, data in tables:
        for kind, table in (data.get("aliases") or {}).items():
            for alias, target in (table or {}).items():
                plugin_set.registry.add_alias(kind, str(alias), str(target))


def apply_registry_data(plugin_set: PluginSet, path: Path, data: dict[str, Any]) -> None:
    """Merge aliases, component defaults, architectures and presets read from ``path``."""
    _apply_aliases(plugin_set, [(path, data)])
    for kind, table in (data.get("defaults") or {}).items():
        plugin_set.component_defaults.setdefault(kind, {}).update(table or {})
    plugin_set.registry.architectures.update(data.get("architectures") or {})
    plugin_set.presets.update(data.get("presets") or {})
    plugin_set.checkpoints.update({str(k): str(v) for k, v in (data.get("checkpoints") or {}).items()})


def apply_registry_file(plugin_set: PluginSet, path: Path) -> None:
    """Merge aliases, component defaults, architectures and presets from one YAML file."""
    apply_registry_data(plugin_set, path, read_registry_file(path))


@functools.cache
def get_plugins() -> PluginSet:
    """The process-wide plugin set: the ``nue`` entry points, loaded once, on first use.

    Every function that takes ``plugins=`` falls back to it; pass a set explicitly to use another.
    The cache is this function's own: ``get_plugins.cache_clear()`` forgets the loaded set (tests
    that install or remove plugins), and the next call loads them again.
    """
    return load_plugins()
