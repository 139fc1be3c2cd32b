"""Who may see a task's ``env`` values: the one home of that rule (issue 11).

Users put secrets in ``env``. Its values are shown to the task's owner and to
admins only; everyone else (other providers, and every worker token over
REST: a worker gets ``env`` in the ``assigned`` frame of the attempts it
holds, and nowhere else) sees the keys with each value replaced by
``REDACTED``. Keys are not secret: they stay visible, and ``$exists`` on them
behaves the same for everyone.

A ``where`` on ``env`` values must not be a probe into other users' secrets
(``{"env.X": {"$gte": "m"}}`` answers one bit per request otherwise). So for
a caller who may not see every task's env, each condition on an env value is
read as "this env value matches, *and the task is mine*": it can only ever
match the caller's own tasks, while the rest of the ``where`` keeps its usual
meaning. This is what a user expects of ``banyan ls --where
'{"env.RUN": "7"}'``: their own runs (an admin still finds everyone's).
``sort`` on ``env`` is refused for all (``banyan.fields``), and
``projection`` only selects what redaction then hides.
"""

from __future__ import annotations

from typing import Any, Final

from banyan.query import And, Compare, Node, Op, Or
from banyan.tokens import Caller, Role

# What a hidden env value reads as. A fixed string, so a client that shows
# ``env`` needs no special case, and it cannot be mistaken for a real value's
# length or shape.
REDACTED: Final = "***"
ENV_PREFIX: Final = "env."


def may_see_env(caller: Caller, owner: str) -> bool:
    """The owner (a provider) and admins see ``env`` values; nobody else."""
    return caller.role is Role.ADMIN or (caller.role is Role.PROVIDER and caller.name == owner)


def redact_env(doc: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """``doc`` as ``caller`` may see it: ``env`` values hidden unless allowed.
    Returns ``doc`` itself when nothing is hidden, else a shallow copy."""
    env = doc.get("env")
    if not env or may_see_env(caller, doc.get("owner", "")):
        return doc
    return {**doc, "env": dict.fromkeys(env, REDACTED)}


def scope_where(node: Node | None, caller: Caller) -> Node | None:
    """``node`` with every condition on an env value limited to ``caller``'s
    own tasks (nothing changes for an admin). ``$exists`` is left alone: keys
    are visible to everyone."""
    if node is None or caller.role is Role.ADMIN:
        return node
    return _scope(node, caller.name)


def _scope(node: Node, me: str) -> Node:
    if isinstance(node, And):
        return And(tuple(_scope(term, me) for term in node.terms))
    if isinstance(node, Or):
        return Or(tuple(_scope(term, me) for term in node.terms))
    if node.field.startswith(ENV_PREFIX) and node.op is not Op.EXISTS:
        return And((node, Compare("owner", Op.EQ, me)))
    return node
