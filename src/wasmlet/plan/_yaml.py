"""PyYAML's safe loader with bounds, for manifests from people the host does not trust.

``yaml.safe_load`` refuses arbitrary Python objects but not the cheaper
attacks, which this loader refuses with a ``yaml.MarkedYAMLError`` that names
the line:

- **alias bombs** ("billion laughs"): an alias is a reference, so nine aliases
  of nine aliases of ... make a few hundred bytes stand for millions of nodes,
  and whatever walks the result (validation, an error message that prints a
  value) pays for all of them. The composer counts what the stream would be
  with every alias expanded, nodes and scalar characters, and stops at
  ``MAX_NODES`` / ``MAX_CHARS``;
- **recursive aliases** (``&a [*a]``), which PyYAML builds into a cyclic
  list: refused;
- **deep nesting**: the composer recurses once per level, so ``[[[[...`` ends
  in ``RecursionError``; refused beyond ``MAX_DEPTH`` levels, and so are
  chains of merge keys (``<<: *a``), which the constructor follows recursively;
- **duplicate keys**, which PyYAML silently resolves to the last one (YAML 1.2,
  section 3.2.1.1: the keys of a mapping are unique): refused, naming both lines;
- **numbers that cost time**: YAML 1.1 base-60 integers (``1:2:3:...``) are
  computed with one big-integer multiplication per part, quadratic in their
  length, and ``int()`` refuses more than 4300 digits with a plain
  ``ValueError``: numbers are limited to ``MAX_NUMBER_CHARS`` characters;
- **values PyYAML cannot build** raise whatever its constructors happen to
  raise (``ValueError`` for ``2001-02-31``, ``IndexError`` for ``!!int ''``,
  ``KeyError`` for ``!!bool x``, ``AttributeError`` for ``!!timestamp x``):
  translated to a marked error;
- **JSON numbers read as strings**: YAML 1.1 (PyYAML's schema) wants a ``.``
  and a signed exponent in a float, so ``1e-05``, as ``json.dumps`` writes
  it, was the string ``'1e-05'``. A document that starts with ``{`` or ``[``
  (JSON, or YAML in flow style) is read with JSON's number rules (RFC 8259,
  section 6); block YAML keeps YAML 1.1's, which PyYAML's own writer relies
  on when it leaves a string such as ``1e5`` unquoted;
- **half surrogate pairs**: JSON writes a character outside the BMP as two
  ``\\u`` escapes (RFC 8259, section 7), which PyYAML decodes one by one into
  lone surrogates that no UTF-8 encoder accepts later; pairs are joined, a
  lone half is refused.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_CHARS", "MAX_DEPTH", "MAX_NODES", "MAX_NUMBER_CHARS", "load_all", "short_repr"]

MAX_NODES = 100_000  # a real manifest has a few hundred
MAX_CHARS = 4 << 20  # scalar characters once aliases are expanded: four times the largest manifest
MAX_DEPTH = 64  # a manifest nests about ten levels
MAX_NUMBER_CHARS = 64

_STR = "tag:yaml.org,2002:str"
_VALUE = "tag:yaml.org,2002:value"  # the '=' key, which PyYAML turns into the string '='
_MERGE = "tag:yaml.org,2002:merge"  # '<<' keys may repeat and are overridden by design
_SURROGATE = re.compile("[\ud800-\udfff]")


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` for a message, never longer than ``limit``, whatever ``value`` is.

    A plain ``repr`` of a manifest value is unbounded (a list shared through
    aliases prints once per reference), so a string is cut, a number shown and
    a container only counted.
    """
    if isinstance(value, str):
        text = repr(value[:limit])
    elif isinstance(value, int) and value.bit_length() > 256:
        text = f"an integer of {value.bit_length()} bits"  # repr() refuses more than 4300 digits
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple, dict)):
        text = f"a {type(value).__name__} of {len(value)} items"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._open: set[str] = set()  # anchors whose node is still being composed
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> expanded (nodes, characters)
        self._nodes = 0
        self._chars = 0
        self._merging = 0

    # Composing: bounds on size, depth and aliases ---------------------------------
    def compose_document(self) -> Node | None:
        try:
            return super().compose_document()
        finally:
            self._sizes.clear()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise ComposerError(None, None, f"alias *{event.anchor[:40]} is inside the node it refers to "
                                    "(recursive data)", mark)
            node = super().compose_node(parent, index)
            assert node is not None
            nodes, chars = self._sizes[id(node)]
            self._count(nodes, chars, mark)
            return node
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        assert node is not None
        own_chars = len(node.value) if isinstance(node, ScalarNode) else 0
        nodes, chars = 1, own_chars
        for child in _children(node):
            child_nodes, child_chars = self._sizes[id(child)]
            nodes += child_nodes
            chars += child_chars
        self._sizes[id(node)] = (nodes, chars)
        self._count(1, own_chars, mark)
        return node

    def _count(self, nodes: int, chars: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"the manifest stands for more than {MAX_NODES} nodes once its "
                                "aliases are expanded", mark)
        if self._chars > MAX_CHARS:
            raise ComposerError(None, None, f"the manifest stands for more than {MAX_CHARS} characters once its "
                                "aliases are expanded", mark)

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[object, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue
            key = key_node.value if key_node.tag in (_STR, _VALUE) else self.construct_object(key_node, deep=True)
            first = seen.setdefault(key, key_node)
            if first is not key_node:
                raise ComposerError(None, None, f"duplicate key {short_repr(key)} (first at line "
                                    f"{first.start_mark.line + 1})", key_node.start_mark)
        return node

    # Constructing: no exception but a marked YAML error -----------------------------
    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
            what = f"{exc}" if isinstance(exc, ValueError) else f"not a valid {node.tag.rsplit(':', 1)[-1]}"
            raise ConstructorError(None, None, f"cannot read this value: {what[:100]}", node.start_mark) from exc

    def flatten_mapping(self, node: MappingNode) -> None:
        # Recursive along a chain of '<<' merges whose nodes are constructed out of document order.
        self._merging += 1
        try:
            if self._merging > MAX_DEPTH:
                raise ConstructorError(None, None, f"merge keys (<<) chained more than {MAX_DEPTH} deep",
                                       node.start_mark)
            super().flatten_mapping(node)
        finally:
            self._merging -= 1

    def _number(self, node: ScalarNode) -> None:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise ConstructorError(None, None, f"a number longer than {MAX_NUMBER_CHARS} characters "
                                   "(quote it if it is text)", node.start_mark)

    def construct_int(self, node: ScalarNode) -> int:
        self._number(node)
        return self.construct_yaml_int(node)

    def construct_float(self, node: ScalarNode) -> float:
        self._number(node)
        return self.construct_yaml_float(node)

    def construct_str(self, node: ScalarNode) -> str:
        value = self.construct_scalar(node)
        if _SURROGATE.search(value):
            try:
                value = value.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError as exc:
                raise ConstructorError(None, None, "a \\u escape is half of a UTF-16 surrogate pair",
                                       node.start_mark) from exc
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_float)
_BoundedLoader.add_constructor(_STR, _BoundedLoader.construct_str)


class _JsonNumbersLoader(_BoundedLoader):
    """For JSON: a number with an exponent is a float, with or without a '.' and a sign (RFC 8259, section 6)."""


# After the YAML 1.1 rules, which keep what they match (ints, 1.5, 1.0e+5, .inf).
_JsonNumbersLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_all(text: str) -> list[Any]:
    """Every document of ``text``; raise ``yaml.YAMLError`` (marked where possible) on anything refused."""
    json_like = text.lstrip(" \t\r\n\ufeff")[:1] in ("{", "[")
    return list(yaml.load_all(text, Loader=_JsonNumbersLoader if json_like else _BoundedLoader))
