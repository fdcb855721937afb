"""The one YAML reader of nue-asr: safe tags only, with every size it can blow up bounded.

Every YAML that nue reads (model folders, train configs, sweeps, registry.yaml, ``--set`` values)
goes through ``load_yaml``. ``yaml.safe_load`` alone refuses code, but not documents that are
small on disk and huge in memory:

- aliases: ``b: &b [*a, *a, ...]`` nested a few levels (a "billion laughs" document) is a few
  hundred bytes that expand to billions of values once anything walks it (pydantic, deepcopy,
  ``safe_dump``). PyYAML shares the aliased objects, so the load itself is cheap and the hang
  comes later; the expansion is therefore measured on the composed node graph, before any
  Python object is built.
- nesting: ``[[[[...]]]]`` 5,000 levels deep ends in ``RecursionError`` inside the composer.
- scalars the safe constructors cannot convert (``2024-13-45`` read as a date, a 5,000-digit
  integer) raise a plain ``ValueError`` without a line number.

Each of these becomes a ``yaml.YAMLError`` with the line and column, so the callers' existing
``except yaml.YAMLError`` turns it into one message naming the file.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

# Bounds far above any real config (the largest, registry.yaml, has no alias and nests 4 deep)
# and far below what hurts: 10,000 extra nodes validate in milliseconds.
MAX_ALIASES = 100
MAX_ALIAS_EXPANSION = 10_000  # nodes that aliases add to the document when expanded
MAX_DEPTH = 64  # nesting of mappings and sequences, aliases expanded
MAX_YAML_BYTES = 16 * 2**20  # a YAML file larger than this is not a config


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses too many aliases, alias expansion, deep nesting and
    unconvertible scalars, each as a ``yaml.YAMLError`` with its position."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases (*name) in one document; "
                                    "write the values out", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node:
        node = super().compose_document()
        if self._aliases:
            _check_expansion(node)
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # yaml.YAMLError is neither: those pass through
            shown = str(node.value)[:40] if not isinstance(node, (MappingNode, SequenceNode)) else node.tag
            raise ConstructorError(None, None, f"cannot read {shown!r} ({exc})", node.start_mark) from None


def _check_expansion(root: Node) -> None:
    """Refuse a node graph whose aliases expand it by more than MAX_ALIAS_EXPANSION nodes or
    deeper than MAX_DEPTH, or that contains itself (``&a [*a]``)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, expanded depth)
    open_nodes: set[int] = set()

    def walk(node: Node) -> tuple[int, int]:
        # Recursion follows the document's own nesting (already bounded by compose_node): an alias
        # points at a node composed earlier, which is memoised by the time it is met again.
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ComposerError(None, None, "an alias refers to a node that contains it (recursive)", node.start_mark)
        open_nodes.add(key)
        size, depth = 1, 0
        if isinstance(node, (SequenceNode, MappingNode)):
            children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                child_size, child_depth = walk(child)
                size, depth = size + child_size, max(depth, child_depth)
            depth += 1
        open_nodes.discard(key)
        sizes[key] = (size, depth)
        return size, depth

    size, depth = walk(root)
    if size - len(sizes) > MAX_ALIAS_EXPANSION:
        raise ComposerError(None, None, f"aliases expand this document to {float(min(size, 10**300)):.3g} values (more than "
                            f"{MAX_ALIAS_EXPANSION} added by aliases); write the values out", root.start_mark)
    if depth > MAX_DEPTH:
        raise ComposerError(None, None, f"aliases nest this document {depth} levels deep (more than {MAX_DEPTH})",
                            root.start_mark)


def load_yaml(text: str) -> Any:
    """The value of one YAML document, read with ``BoundedSafeLoader``.

    Raises:
        yaml.YAMLError: invalid YAML or a bound exceeded, with line and column where known.
    """
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:  # a construct the bounds above did not foresee; never a traceback
        raise yaml.YAMLError(f"nested too deeply to read (more than {MAX_DEPTH} levels are refused)") from None
    finally:
        loader.dispose()
