"""The one YAML reader: plain documents read as before; aliases, nesting and odd scalars bounded.

Nothing here expands an alias graph (the loader measures it on nodes), so these run in-process;
the entry points (model folders, train configs, ``--set``) are probed under a memory cap in
tests/robustness/test_resource_limits.py and test_config_fuzz.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.yaml_safe import MAX_ALIAS_EXPANSION, MAX_ALIASES, MAX_DEPTH, load_yaml
from tests.robustness.test_config_fuzz import alias_growth

REPO = Path(__file__).resolve().parents[2]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**18, 10**18), st.floats(allow_nan=False),
                    st.text(max_size=12))
plain = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                     max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(plain, st.booleans())
def test_plain_documents_read_exactly_as_safe_load_reads_them(value, flow):
    """100 generated documents (nested lists/mappings of scalars, block or flow style)."""
    text = yaml.safe_dump(value, default_flow_style=flow)
    assert load_yaml(text) == yaml.safe_load(text)


@settings(max_examples=60, deadline=None)
@given(fan=st.integers(1, 12), depth=st.integers(1, 12), leaf=st.sampled_from(["x", "{k: v}", "[]"]))
def test_alias_documents_are_refused_exactly_when_they_expand_past_the_bound(fan, depth, leaf):
    """60 generated anchor/alias documents, fan-out 1-12 over 1-12 levels (up to 12^12 values)."""
    text = "\n".join([f"l0: &l0 [{', '.join([leaf] * fan)}]"] + [
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, depth)])
    too_many = fan * (depth - 1) > MAX_ALIASES
    if too_many or alias_growth(fan, depth, leaf) > MAX_ALIAS_EXPANSION:
        with pytest.raises(yaml.YAMLError, match="aliases"):
            load_yaml(text)
    else:
        assert len(load_yaml(text)) == depth


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(1, 3 * MAX_DEPTH), style=st.sampled_from(["flow-seq", "flow-map", "block"]))
def test_nesting_is_refused_past_the_bound_never_a_recursion_error(depth, style):
    """40 generated nestings of 1-192 levels, as flow sequences, flow mappings or block mappings."""
    if style == "flow-seq":
        text = "[" * depth + "]" * depth
    elif style == "flow-map":
        text = "{a: " * depth + "1" + "}" * depth
    else:
        text = "".join(f"{'  ' * i}a:\n" for i in range(depth)) + "  " * depth + "1\n"
    nodes = depth + (1 if style != "flow-seq" else 0)  # a mapping's innermost value is a node too
    if nodes > MAX_DEPTH:
        with pytest.raises(yaml.YAMLError, match=f"nested more than {MAX_DEPTH} levels deep"):
            load_yaml(text)
    else:
        load_yaml(text)


@pytest.mark.parametrize("text, message", [
    ("a: &a [*a]", "an alias refers to a node that contains it"),
    ("a: *nowhere", "found undefined alias"),
    ("a: 2024-13-45", r"cannot read '2024-13-45' \(month must be in 1..12\)"),
    ("a: " + "9" * 5000, r"cannot read '9999.*' \(Exceeds the limit"),
    ("a: !!python/object/apply:os.system [ls]", "could not determine a constructor"),
])
def test_what_safe_load_let_through_or_crashed_on_is_a_yaml_error_with_a_line(text, message):
    with pytest.raises(yaml.YAMLError, match=message) as err:
        load_yaml(text)
    assert "line 1" in str(err.value)


def test_merge_keys_and_a_few_aliases_still_work():
    assert load_yaml("base: &b {x: 1, y: 2}\nmore: {<<: *b, y: 3}\nagain: *b") == {
        "base": {"x": 1, "y": 2}, "more": {"x": 1, "y": 3}, "again": {"x": 1, "y": 2}}


def test_every_yaml_read_in_the_project_goes_through_the_one_loader():
    """Shipped code (package, plugins, recipes, benchmarks, examples) never calls PyYAML's loaders."""
    loaders = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all|compose)\(")
    offenders = []
    for folder in ("nue_core", "plugins", "recipes", "benchmarks", "examples"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name != "yaml_safe.py" and loaders.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], "read YAML with nue_core.yaml_safe.load_yaml (or config.read_yaml_mapping)"
