"""What a model source is: the one place that tells a folder from a preset, a YAML file or a hub id.

A model source is what a user types where a model is expected (``nue transcribe MODEL``,
``nue_core.load``, ``nue train MODEL``, ``compose``). ``resolve_source`` classifies it; each caller
says which kinds it accepts and what to do with each (``checkpoint.load``,
``composer.resolve_config``, ``train.run.build_training_model``), so the kinds are tried in one
order everywhere and a name means the same thing to every verb.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from nue_core.hub import is_hub_id

if TYPE_CHECKING:
    from nue_core.plugins import PluginSet

# "default": the embedded default model (its folder is ``checkpoint.DEFAULT_MODEL_DIR``);
# "folder": an existing local folder (a saved model, an adapter, or a layout a loader knows);
# "preset": a registry preset name; "config_file": an existing file (a model YAML);
# "checkpoint": a registry ``checkpoints`` name (a hub repo); "hub": a hub repo id ``org/name``.
SourceKind = Literal["default", "folder", "preset", "config_file", "checkpoint", "hub"]
# The order kinds are tried in: a local folder wins over a preset of the same name, a preset over
# a file of the same name, anything local over the hub.
KIND_ORDER: tuple[SourceKind, ...] = ("default", "folder", "preset", "config_file", "checkpoint", "hub")
DEFAULT_MODEL_NAME = "default"


@dataclass(frozen=True)
class ModelSource:
    """A classified model source.

    Attributes:
        kind: see ``SourceKind``.
        text: what the user gave, as a string (for messages).
        path: the local folder or file for "folder" / "config_file", else None.
        name: the preset or checkpoint name, or the hub repo id; None for local kinds.
        repo_id: the hub repository to fetch for "checkpoint" and "hub", else None.
    """

    kind: SourceKind
    text: str
    path: Path | None = None
    name: str | None = None
    repo_id: str | None = None


def resolve_source(
    source: str | Path, plugins: PluginSet, accept: Sequence[SourceKind] = KIND_ORDER
) -> ModelSource | None:
    """Classify ``source`` as the first kind of ``KIND_ORDER`` (among ``accept``) it is.

    Args:
        source: a path or a name. A ``Path`` is never taken as a hub id.
        plugins: the plugin set whose presets and checkpoint names count.
        accept: the kinds the caller can use; others are not tried.

    Returns:
        the description, or None when ``source`` is none of the accepted kinds (each caller says
        what it wanted in its own error).
    """
    text = str(source)
    local = isinstance(source, Path)
    path = Path(source).expanduser()
    for kind in KIND_ORDER:
        if kind not in accept:
            continue
        if kind == "default" and text == DEFAULT_MODEL_NAME:
            return ModelSource("default", text)
        if kind == "folder" and path.is_dir():
            return ModelSource("folder", text, path=path)
        if kind == "preset" and text in plugins.presets:
            return ModelSource("preset", text, name=text)
        if kind == "config_file" and Path(text).is_file():
            return ModelSource("config_file", text, path=Path(text))
        if kind == "checkpoint" and text in plugins.checkpoints:
            return ModelSource("checkpoint", text, name=text, repo_id=plugins.checkpoints[text])
        if kind == "hub" and not local and is_hub_id(text):  # is_hub_id refuses anything path-like
            return ModelSource("hub", text, name=text, repo_id=text)
    return None
