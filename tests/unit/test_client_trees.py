"""``banyan.client.trees`` and ``banyan.client.format``: the tree rules and
the words the CLI and the TUI share (each front end also tests its own
rendering of them)."""

from __future__ import annotations

from typing import Any

from banyan.client.format import short_duration, status_of
from banyan.client.trees import (
    TreeNode,
    build_tree,
    descendants,
    doc_continuations,
    subtree_summary,
    summary_text,
)


def _docs() -> dict[str, Any]:
    # a → b, c; b → d; c → d (two parents), x (not loaded)
    return {
        "a": {"_id": "a", "continuations": ["b", "c"], "state": "terminated"},
        "b": {"_id": "b", "continuations": ["d"], "state": "running"},
        "c": {"_id": "c", "continuations": ["d", "x"], "state": "cancelled"},
        "d": {"_id": "d", "state": "inactive"},
    }


def _shape(node: TreeNode) -> Any:
    mark = "*" if node.repeat else "?" if node.missing else ""
    return (node.id + mark, [_shape(c) for c in node.children])


def test_descendants_nearest_first_each_once_unloaded_only_when_asked() -> None:
    docs = _docs()
    assert descendants(docs, "a", doc_continuations) == ["b", "c", "d"]
    assert descendants(docs, "a", doc_continuations, unloaded=True) == ["b", "c", "d", "x"]
    assert descendants(docs, "d", doc_continuations) == []
    assert descendants(docs, "nope", doc_continuations) == []


def test_build_tree_depth_first_repeats_and_missing() -> None:
    docs = _docs()
    full = build_tree(docs, "a", doc_continuations)
    assert _shape(full) == (
        "a",
        [("b", [("d", [])]), ("c", [("d*", []), ("x?", [])])],
    )
    loaded = build_tree(docs, "a", doc_continuations, unloaded=False)
    assert _shape(loaded) == ("a", [("b", [("d", [])]), ("c", [("d*", [])])])
    assert _shape(build_tree(docs, "a", doc_continuations, limit=3)) == (
        "a",
        [("b", [("d", [])])],
    )
    assert _shape(build_tree(docs, "gone", doc_continuations)) == ("gone?", [])


def test_a_cycle_ends_the_walk() -> None:
    docs = {"a": {"continuations": ["b"]}, "b": {"continuations": ["a"]}}
    assert descendants(docs, "a", doc_continuations) == ["b"]
    assert _shape(build_tree(docs, "a", doc_continuations)) == ("a", [("b", [("a*", [])])])


def test_summaries() -> None:
    assert summary_text(["success", "success", "failed", "running", "cancelling"]) == (
        "2/5 done, 1 failed, 2 running"
    )
    assert summary_text(["inactive"]) == "0/1 done"
    docs = _docs()

    def status(doc: Any) -> str:
        return "?" if doc is None else status_of(doc["state"], None)

    assert subtree_summary(docs, "a", doc_continuations, status) == (
        "1/4 done, 1 cancelled, 1 running"
    )
    assert subtree_summary(docs, "a", doc_continuations, status, unloaded=True) == (
        "1/5 done, 1 cancelled, 1 running"
    )


def test_status_and_short_duration() -> None:
    assert status_of("terminated", "success") == status_of("terminated") == "success"
    assert status_of("terminated", "failure (SIGKILL)") == "failed"
    assert status_of("pending_cancellation") == "cancelling"
    assert status_of("no-such-state") == "inactive"
    assert [short_duration(s) for s in (None, -3, 42, 300, 7200, 200_000)] == [
        "-",
        "0s",
        "42s",
        "5m",
        "2h",
        "2d",
    ]
