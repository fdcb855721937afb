"""Render docs/config.md from the pydantic models themselves, so the reference cannot go stale.

Regenerate with ``python -m nue_core.config_reference > docs/config.md``; a test compares.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from nue_core.config import ComponentSpec, DecodeSpec, LoraSpec, ModelConfig, PromptSpec
from nue_core.plugins import PluginSet, load_plugins
from nue_core.registry import KINDS

HEADER = """# Configuration reference

Generated from the pydantic models by `python -m nue_core.config_reference > docs/config.md`
(a test fails when this file is stale). A model is one YAML file:

```yaml
encoder: {name: hubert, checkpoint: rinna/japanese-hubert-base, freeze: [feature_extractor]}
bridge:  {name: conv, kernel_sizes: [4, 4], strides: [2, 2]}
decoder: {name: gpt-neox, checkpoint: rinna/japanese-gpt-neox-3.6b, lora: {r: 8, alpha: 16}}
prompt:  {prefix: "<s>", postfix: "[SEP]"}
ctc_weight: 0.0
```

Each part takes the shared fields of `ComponentSpec` plus the options of its component, listed
below per plugin. Unknown keys are errors that name the key and list the allowed ones.
"""


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return f"`{value!r}`"


def model_table(model: type[BaseModel]) -> str:
    """A Markdown table of a model's fields: name, type, default, description."""
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | `{_type_name(field.annotation)}` | {_default(field)} | {desc} |")
    return "\n".join(rows)


def first_party_plugins() -> PluginSet:
    """The plugins shipped with nue-asr only (third-party ones installed beside it are left out)."""
    import importlib

    names = ("nue_hf", "nue_bridges", "nue_s3prl", "nue_fbank")
    return load_plugins(plugins=[(n, importlib.import_module(f"{n}.plugin")) for n in names])


def render(plugins: PluginSet | None = None) -> str:
    """The whole reference as Markdown (default: the first-party plugins)."""
    plugins = plugins or first_party_plugins()
    parts = [HEADER]
    for title, model in (("Model (`ModelConfig`)", ModelConfig), ("Every part (`ComponentSpec`)", ComponentSpec),
                         ("`prompt` (`PromptSpec`)", PromptSpec), ("`lora` (`LoraSpec`)", LoraSpec),
                         ("`decode` (`DecodeSpec`)", DecodeSpec)):
        parts.append(f"## {title}\n\n{model_table(model)}\n")
    for kind in KINDS:
        parts.append(f"## {kind.capitalize()}s\n")
        for entry in plugins.registry.entries(kind):
            aliases = plugins.registry.aliases_of(kind, entry.name)
            also = f" (aliases: {', '.join(aliases)})" if aliases else ""
            parts.append(
                f"### `{entry.name}`{also}\n\nPlugin `{entry.plugin}`. {entry.description}\n\n"
                f"{model_table(entry.options)}\n"
            )
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
