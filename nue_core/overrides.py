"""Dotted-path overrides of nested config dicts: ``decoder.lora.r=8``, ``bridge.strides=[2,2]``."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from nue_core.errors import ConfigError
from nue_core.yaml_safe import load_yaml


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", value)``; VALUE is read as YAML (numbers, lists, booleans).

    VALUE goes through the same bounded reader as YAML files (``nue_core.yaml_safe``): anchors
    that expand without end or nesting thousands deep are a ConfigError, not a hang.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' must look like key.path=value")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        shown = text if len(text) <= 80 else f"{text[:60]}..."  # a hostile value can be huge
        raise ConfigError(f"override '{shown}': value is not valid YAML ({exc})") from None
    return key.strip(), value


def set_dotted(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``path`` set; intermediate mappings are created as needed."""
    result = copy.deepcopy(data)
    node = result
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and i == 0:
            child = {"name": child}  # `encoder: hubert` shorthand becomes a mapping
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{path}': '{'.'.join(parts[: i + 1])}' is not a mapping")
        node[part] = child
        node = child
    node[parts[-1]] = value
    return result


def get_dotted(data: dict[str, Any], path: str) -> Any:
    """The value at ``path`` or None."""
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
