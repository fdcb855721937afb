"""compose(config) -> SpeechLM: build each part through the registry and wire the sizes.

The composer is the one place that knows the order of construction: the decoder first (its width
and tokenizer), then the encoder, then the bridge with ``in_dim``/``out_dim`` and the CTC
vocabulary filled in. Freezing and LoRA are applied last (``nue_core.trainability``).

Every path that builds a model (``compose``, loading a model folder or a released layout, presets)
comes through here, so this is where sizes are bounded before anything is allocated
(``nue_core.size_check``): size fields are checked, then (when weights are allocated) the model is
first built on the meta device and its bytes compared with the memory there is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from nue_core.config import KINDS, SHARED_FIELDS, ComponentSpec, ModelConfig
from nue_core.errors import ConfigError
from nue_core.model import SpeechLM
from nue_core.model_source import resolve_source
from nue_core.plugins import PluginSet, get_plugins
from nue_core.registry import BuildContext, Kind
from nue_core.size_check import available_memory, check_built, check_estimate, check_size_fields
from nue_core.trainability import apply_trainability

def resolve_config(config: ModelConfig | dict[str, Any] | str | Path, plugins: PluginSet | None = None) -> ModelConfig:
    """A ModelConfig from a config object, a dict, a YAML path or a preset name.

    Components given by name only get the defaults registry.yaml lists for them (e.g.
    ``hubert`` -> ``checkpoint: rinna/japanese-hubert-base``).
    """
    plugins = plugins or get_plugins()
    if isinstance(config, (str, Path)):
        text = str(config)
        found = resolve_source(config, plugins, accept=("preset", "config_file"))
        if found is not None and found.kind == "preset":
            config = ModelConfig.from_dict(plugins.presets[text], source=f"preset '{text}'")
        elif found is not None:
            config = ModelConfig.load(text)
        else:
            raise ConfigError(
                f"'{text}' is neither a config file nor a preset; presets: {', '.join(sorted(plugins.presets))}"
            )
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    updates = {}
    for kind in KINDS:
        spec: ComponentSpec = getattr(config, kind)
        entry = plugins.registry.get(kind, spec.name)
        values = spec.model_dump(exclude_none=True)
        values["name"] = entry.name  # store the canonical name, not the alias
        # A component's own defaults for shared fields (e.g. a frozen SSL upstream) apply
        # wherever the config leaves those fields unset.
        values.update({k: v for k, v in entry.shared_defaults.items() if k not in spec.model_fields_set})
        if not spec.options:
            values.update(plugins.component_defaults.get(kind, {}).get(entry.name, {}))
        updates[kind] = ComponentSpec.model_validate(values)
    return config.model_copy(update=updates)


def compose(
    config: ModelConfig | dict[str, Any] | str | Path,
    *,
    plugins: PluginSet | None = None,
    load_weights: bool = True,
    describe: bool = False,
    base_dir: Path | None = None,
) -> SpeechLM:
    """Build a SpeechLM from a config.

    Args:
        config: ModelConfig, dict, YAML path or preset name.
        plugins: plugin set to build from (default: the installed plugins).
        load_weights: read pretrained weights named by ``checkpoint`` options.
        describe: build on the meta device without reading any weights (fast, no memory; for
            counting parameters and sizes). The model cannot run.
        base_dir: folder that relative paths in the config resolve against.
    """
    plugins = plugins or get_plugins()
    config = resolve_config(config, plugins)
    check_sizes(config, plugins, allocate=not describe, base_dir=base_dir)
    return _compose(config, plugins, load_weights=load_weights, describe=describe, base_dir=base_dir)


def check_sizes(config: ModelConfig, plugins: PluginSet, allocate: bool, base_dir: Path | None = None) -> None:
    """Refuse sizes that are not positive, absurd layer counts and (``allocate``) a model that
    cannot fit in the available memory: first from its size fields, then built on the meta device.

    Raises:
        ConfigError: a size field that is not a positive integer (naming it).
        ModelTooLargeError: too many layers, or a model larger than the memory (with the estimate).
    """
    scopes, dtypes = {}, {}
    for kind in KINDS:
        spec: ComponentSpec = getattr(config, kind)
        entry = plugins.registry.get(kind, spec.name)
        # the plugin's own validation speaks first: its messages know its fields best
        entry.validate_options(spec.options, where=f"{kind} '{entry.name}' options")
        scopes[kind] = check_size_fields(kind, spec.options, typed=frozenset(entry.options.model_fields))
        dtypes[kind] = str(spec.options.get("dtype", "float32"))
    if not allocate:
        return  # describing allocates nothing: only the layer cap above guards the meta build
    available = available_memory()
    check_estimate(scopes, dtypes, available)
    try:
        described = _compose(config, plugins, load_weights=False, describe=True, base_dir=base_dir)
    except Exception:  # noqa: BLE001 - a part that cannot be described: its real build reports the cause
        return
    check_built({kind: getattr(described, kind) for kind in KINDS}, available)


def _compose(
    config: ModelConfig, plugins: PluginSet, *, load_weights: bool, describe: bool, base_dir: Path | None
) -> SpeechLM:
    """Build the parts of a resolved config in order and wire them into a SpeechLM."""
    ctx = BuildContext(
        load_weights=load_weights and not describe,
        base_dir=Path(base_dir) if base_dir else None,
        architectures=plugins.registry.architectures,
    )
    device = torch.device("meta") if describe else contextlib.nullcontext()
    with device:
        decoder = _build(plugins, "decoder", config.decoder, ctx)
        encoder = _build(plugins, "encoder", config.encoder, ctx)
        tokenizer = decoder.tokenizer
        ctx.in_dim, ctx.out_dim = encoder.output_dim, decoder.embed_dim
        ctx.input_frame_rate_hz = encoder.frame_rate_hz
        ctx.ctc_vocab_size = tokenizer.vocab_size if tokenizer is not None else decoder.vocab_size
        ctx.tokenizer = tokenizer
        bridge = _build(plugins, "bridge", config.bridge, ctx)
    if config.decode.ctc_weight > 0 and getattr(bridge, "ctc_blank_id", None) is None:
        raise ConfigError(f"decode.ctc_weight {config.decode.ctc_weight}: joint CTC decoding needs a bridge with a CTC "
                          f"head, and bridge '{config.bridge.name}' has none (give it one, e.g. ctc_head: true on "
                          "conv, or set decode.ctc_weight: 0)")
    if tokenizer is not None:
        prefix, postfix = tokenizer.encode(config.prompt.prefix), tokenizer.encode(config.prompt.postfix)
    else:
        prefix = postfix = []
    model = SpeechLM(encoder, bridge, decoder, config, prefix, postfix)
    apply_trainability(model, config)
    return model


def _build(plugins: PluginSet, kind: Kind, spec: ComponentSpec, ctx: BuildContext) -> Any:
    entry = plugins.registry.get(kind, spec.name)
    try:
        return entry.build(spec.options, ctx, where=f"{kind} '{entry.name}' options")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{kind} '{entry.name}' (plugin '{entry.plugin}') failed to build: {type(exc).__name__}: {exc}"
        ) from exc


def export_config(model: SpeechLM, folder: Path) -> ModelConfig:
    """The model's config with each part's options replaced by what rebuilds it from ``folder``."""
    updates = {}
    for kind in KINDS:
        spec: ComponentSpec = getattr(model.config, kind)
        shared = spec.model_dump(include=set(SHARED_FIELDS), exclude_none=True)
        options = getattr(model, kind).export_options(folder)
        updates[kind] = ComponentSpec.model_validate({**options, **shared})
    return model.config.model_copy(update=updates)
