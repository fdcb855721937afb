"""The whole plugin surface of nue-asr, on one screen.

A plugin is a module (or object) with functions decorated by ``nue_core.hookimpl`` whose names
match the specs below, exposed through the entry-point group ``nue``::

    [project.entry-points.nue]
    my_plugin = "my_package.plugin"

Each hook receives a ``register`` callback:

    register(name, factory, options=OptionsModel, aliases=("other-name",), description="...",
             shared_defaults={"freeze": ["upstream"]})

``shared_defaults`` sets the component's own defaults for the shared part fields (trainable,
freeze, lora), used wherever a config leaves them unset. ``unavailable="why; how to fix"`` marks
a component that cannot be built in this environment (a missing extra); ``nue plugins`` shows it,
while ``description`` stays the same everywhere (the config reference is generated from it).

``factory(options, ctx)`` gets the validated options model instance and a
``nue_core.registry.BuildContext`` (sizes supplied by the composer, whether to read weights,
the folder relative paths resolve against) and returns a ``torch.nn.Module`` that satisfies the
matching protocol in ``nue_core.protocols``.

Every ``register`` call is checked (a name of lowercase letters, digits, ``-_.:``; callables;
``options`` a pydantic model class); a name another plugin already registered disables the later
plugin (first-party plugins register first); an exception from a hook disables its plugin only.
The rules: docs/plugins.md, "Conflicts and failures".
"""

import pluggy

hookspec = pluggy.HookspecMarker("nue")
hookimpl = pluggy.HookimplMarker("nue")


@hookspec
def register_encoders(register):  # type: ignore[no-untyped-def]
    """Register waveform encoders (``Encoder`` protocol)."""


@hookspec
def register_bridges(register):  # type: ignore[no-untyped-def]
    """Register bridges from encoder frames to LLM prompt vectors (``Bridge`` protocol)."""


@hookspec
def register_decoders(register):  # type: ignore[no-untyped-def]
    """Register decoder-only LMs (``Decoder`` protocol)."""


@hookspec
def register_architectures(register):  # type: ignore[no-untyped-def]
    """Register architecture configs of known checkpoints: ``register(checkpoint_id, config_dict)``.

    The composer uses them to describe a model offline (meta device, no weights read) when the
    checkpoint itself is not at hand.
    """


@hookspec
def register_model_loaders(register):  # type: ignore[no-untyped-def]
    """Register loaders for foreign model folders: ``register(name, detect, load)``.

    ``detect(folder) -> bool`` says whether a folder is in this layout; ``load(folder, *,
    plugins, **kw)`` returns a ``SpeechLM``, building its parts from ``plugins`` (the
    ``PluginSet`` the caller of ``nue_core.load`` chose; accept unknown keywords with ``**kw``).
    Used by ``nue_core.load`` for released checkpoints: loaders are asked
    in turn, one whose ``detect`` raises is skipped (with a warning), and a ``load`` that fails on
    a folder its ``detect`` claimed is a ``CheckpointError`` naming the loader and the folder.
    """


@hookspec
def register_exporters(register):  # type: ignore[no-untyped-def]
    """Register writers of foreign model-folder layouts: ``register(format_name, export)``.

    ``export(model, folder)`` writes a ``SpeechLM`` in that layout or raises
    ``nue_core.errors.ConfigError`` saying why the layout cannot hold the model. Used by
    ``nue export MODEL --format NAME``.
    """
