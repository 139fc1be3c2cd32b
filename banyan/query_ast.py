"""The ``where`` AST (``Compare`` / ``And`` / ``Or`` over the operators ``Op``) and its
evaluation against a plain document (``matches``, the event feed filter), with the same
semantics as the SQL that ``server/stores/sqlite/querysql.py`` compiles from it.
``banyan.query`` parses request text into this AST and re-exports every name here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

# --- the AST -------------------------------------------------------------------------------


class Op(StrEnum):
    """The comparison operators ``where`` accepts inside a field's operator document."""

    EQ = "$eq"
    NE = "$ne"
    LT = "$lt"
    LTE = "$lte"
    GT = "$gt"
    GTE = "$gte"
    IN = "$in"
    NIN = "$nin"
    EXISTS = "$exists"


ORDERED_OPS = frozenset({Op.LT, Op.LTE, Op.GT, Op.GTE})


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``value`` is converted (dates are epoch floats), a tuple for $in/$nin."""

    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Node, ...]


Node: TypeAlias = Compare | And | Or


# --- evaluation ----------------------------------------------------------------------------

_ORDER: dict[Op, Callable[[Any, Any], bool]] = {
    Op.LT: operator.lt,
    Op.LTE: operator.le,
    Op.GT: operator.gt,
    Op.GTE: operator.ge,
}


def lookup(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; ``None`` when any step is missing or not an object.

    A key may itself contain dots (custom resources such as ``scratch.gb``), so the whole
    remainder is tried as one key before splitting off the next segment.
    """
    current: Any = document
    rest = path
    while isinstance(current, Mapping):
        if rest in current:
            return current[rest]
        head, dot, rest = rest.partition(".")
        if not dot:
            return None
        current = current.get(head)
    return None


def matches(node: Node | None, doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` satisfies ``node`` (``None`` matches everything); Mongo semantics."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(term, doc) for term in node.terms)
    if isinstance(node, Or):
        return any(matches(term, doc) for term in node.terms)
    return _test(node.op, lookup(doc, node.field), node.value)


def _test(op: Op, actual: Any, expected: Any) -> bool:
    if op is Op.EXISTS:
        return (actual is not None) is expected
    if op is Op.NE:  # negations match what is missing, as in Mongo
        return not _test(Op.EQ, actual, expected)
    if op is Op.NIN:
        return not _test(Op.IN, actual, expected)
    if isinstance(actual, list | tuple):  # list fields: true when any element is
        return any(_test(op, item, expected) for item in actual)
    if op is Op.EQ:
        return actual is None if expected is None else actual is not None and actual == expected
    if op is Op.IN:
        return any(_test(Op.EQ, actual, item) for item in expected)
    if actual is None or expected is None:
        return False
    try:
        return _ORDER[op](actual, expected)
    except TypeError:  # a document of the wrong shape never matches, rather than crash
        return False
