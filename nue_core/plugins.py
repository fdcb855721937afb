"""Plugin manager: every plugin, first-party included, comes from the entry-point group ``nue``.

A plugin that fails to import or to register is recorded with its name and error in
``PluginSet.broken`` and skipped; the others still load. An installed package that does not load
(torchaudio built for another torch) is settled before any plugin is imported, so it cannot take
a plugin down; what is wrong with it is kept, one line each, in ``PluginSet.problems``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from nue_core import hookspecs
from nue_core.config import read_yaml_mapping
from nue_core.errors import ConfigError, NueError
from nue_core.registry import KINDS, ComponentEntry, NoOptions, Registry
from nue_core.torchaudio_guard import guard_torchaudio

ENTRY_POINT_GROUP = "nue"
_HOOK_KIND = {"register_encoders": "encoder", "register_bridges": "bridge", "register_decoders": "decoder"}


@dataclass
class PluginInfo:
    """One plugin as loaded: where it came from, what it implements, and any error."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


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
    loaders: list[ModelLoader] = field(default_factory=list)
    exporters: dict[str, ModelExporter] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    component_defaults: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # installed packages that do not load: what, and the fix

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def load_plugins(
    plugins: Iterable[tuple[str, ModuleType | object]] | None = None,
    registry_files: Iterable[Path] | None = None,
) -> PluginSet:
    """Load plugins and fill a fresh registry.

    Args:
        plugins: explicit ``(name, plugin_object)`` pairs; default: the ``nue`` entry points.
        registry_files: YAML files with aliases, presets and architectures; default:
            the packaged ``registry.yaml``.
    """
    # before any plugin imports transformers, which imports an installed torchaudio unguarded
    torchaudio = guard_torchaudio()
    pm = pluggy.PluginManager("nue")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    candidates = list(plugins) if plugins is not None else list(_entry_point_plugins(infos))
    for name, obj in candidates:
        info = PluginInfo(name=name, module=getattr(obj, "__name__", type(obj).__name__))
        info.distribution, info.version = getattr(obj, "_nue_dist", ("", ""))
        try:
            pm.register(obj, name=name)
        except Exception as exc:  # a malformed plugin must not stop the others
            info.error = f"registration failed: {exc!r}"
        infos.append(info)
    result = PluginSet(registry=Registry(), plugins=infos, problems=[torchaudio.problem] if torchaudio.problem else [])
    for info in infos:
        if info.error is None:
            _run_plugin_hooks(pm, info, result)
    files = list(registry_files) if registry_files is not None else [default_registry_file()]
    for path in files:
        apply_registry_file(result, path)
    return result


def _entry_point_plugins(infos: list[PluginInfo]) -> Iterable[tuple[str, Any]]:
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else ""
        version = ep.dist.version if ep.dist else ""
        try:
            obj = ep.load()
        except Exception as exc:
            infos.append(
                PluginInfo(ep.name, ep.value, dist, version, error=f"import failed: {_short(exc)}")
            )
            continue
        try:
            obj._nue_dist = (dist, version)
        except AttributeError:
            pass
        yield ep.name, obj


_HOOKS = ("register_encoders", "register_bridges", "register_decoders",
          "register_architectures", "register_model_loaders", "register_exporters")


def _run_plugin_hooks(pm: pluggy.PluginManager, info: PluginInfo, result: PluginSet) -> None:
    """Call each hook of one plugin; stage its registrations and commit them only if all succeed."""
    plugin = pm.get_plugin(info.name)
    staged: list[ComponentEntry] = []
    staged_arch: dict[str, dict[str, Any]] = {}
    staged_loaders: list[ModelLoader] = []
    staged_exporters: list[ModelExporter] = []
    for hook_name in _HOOKS:
        impl = getattr(plugin, hook_name, None)
        if impl is None or not any(
            h.plugin_name == info.name for h in getattr(pm.hook, hook_name).get_hookimpls()
        ):
            continue
        info.hooks.append(hook_name)
        if hook_name in _HOOK_KIND:
            register = _component_registrar(_HOOK_KIND[hook_name], info, staged)
        elif hook_name == "register_architectures":
            register = lambda ckpt, cfg: staged_arch.__setitem__(ckpt, dict(cfg))  # noqa: E731
        elif hook_name == "register_model_loaders":
            register = lambda name, detect, load: staged_loaders.append(  # noqa: E731
                ModelLoader(name, detect, load, info.name)
            )
        else:
            register = lambda name, export: staged_exporters.append(  # noqa: E731
                ModelExporter(name, export, info.name)
            )
        try:
            impl(register=register)
        except Exception as exc:
            info.error = f"{hook_name} failed: {_short(exc)}"
            return
    clash = next((e.name for e in staged_exporters if e.name in result.exporters), None)
    if clash is not None:
        info.error = f"export format '{clash}' is already registered by plugin '{result.exporters[clash].plugin}'"
        return
    added: list[ComponentEntry] = []
    try:
        for entry in staged:
            result.registry.add(entry)
            added.append(entry)
    except NueError as exc:
        for entry in added:  # all of a plugin's components, or none
            result.registry.remove(entry)
        info.error = str(exc)
        return
    result.registry.architectures.update(staged_arch)
    result.loaders.extend(staged_loaders)
    result.exporters.update({e.name: e for e in staged_exporters})


def _component_registrar(kind: str, info: PluginInfo, staged: list[ComponentEntry]) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        options: type | None = None,
        aliases: Iterable[str] = (),
        description: str = "",
        shared_defaults: dict[str, Any] | None = None,
        unavailable: str = "",
    ) -> None:
        unknown = set(shared_defaults or {}) - {"trainable", "freeze", "lora"}
        if unknown:
            raise ValueError(f"shared_defaults of '{name}' may set trainable, freeze, lora; got {sorted(unknown)}")
        staged.append(
            ComponentEntry(
                kind=kind,  # type: ignore[arg-type]
                name=name,
                factory=factory,
                options=options or NoOptions,
                aliases=tuple(aliases),
                description=description or (factory.__doc__ or "").strip().split("\n")[0],
                plugin=info.name,
                version=info.version,
                shared_defaults=dict(shared_defaults or {}),
                unavailable=unavailable,
            )
        )

    return register


def _short(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def default_registry_file() -> Path:
    """The packaged registry.yaml (inside nue_core in a wheel, at the repo root in a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "registry.yaml", here.parent / "registry.yaml"):
        if candidate.exists():
            return candidate
    raise ConfigError("registry.yaml not found next to nue_core; the installation is incomplete")


def apply_registry_file(plugin_set: PluginSet, path: Path) -> None:
    """Merge aliases, component defaults, architectures and presets from one YAML file."""
    data = read_yaml_mapping(path, "registry", "a mapping of aliases, architectures, checkpoints, defaults, presets", empty={})
    unknown = set(data) - {"aliases", "defaults", "architectures", "presets", "checkpoints"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; "
            "allowed: aliases, architectures, checkpoints, defaults, presets"
        )
    for kind, table in (data.get("aliases") or {}).items():
        if kind not in KINDS:
            raise ConfigError(f"{path}: aliases.{kind}: kind must be one of {', '.join(KINDS)}")
        for alias, target in table.items():
            plugin_set.registry.add_alias(kind, alias, target)
    for kind, table in (data.get("defaults") or {}).items():
        if kind not in KINDS:
            raise ConfigError(f"{path}: defaults.{kind}: kind must be one of {', '.join(KINDS)}")
        plugin_set.component_defaults.setdefault(kind, {}).update(table or {})
    plugin_set.registry.architectures.update(data.get("architectures") or {})
    plugin_set.presets.update(data.get("presets") or {})
    plugin_set.checkpoints.update({str(k): str(v) for k, v in (data.get("checkpoints") or {}).items()})


_DEFAULT: PluginSet | None = None


def get_plugins(reload: bool = False) -> PluginSet:
    """The process-wide plugin set, loaded from entry points on first use."""
    global _DEFAULT
    if _DEFAULT is None or reload:
        _DEFAULT = load_plugins()
    return _DEFAULT


def set_plugins(plugin_set: PluginSet | None) -> None:
    """Replace the process-wide plugin set (tests use this to isolate themselves)."""
    global _DEFAULT
    _DEFAULT = plugin_set
