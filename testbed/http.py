"""A small blocking JSON client for the harness's server (urllib: no event
loop needed in a test or a benchmark's setup), authenticated with a token."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from banyan.tokens import basic_auth_header
from testbed.procs import wait_for


@dataclass
class Response:
    status: int
    body: Any

    def __repr__(self) -> str:
        return f"<{self.status} {json.dumps(self.body)[:600]}>"


class Http:
    """Blocking JSON requests against the server, authenticated with ``token``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Response:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(
                {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
            )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", basic_auth_header(self.token))
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
            exc.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return Response(status, parsed)

    def get(self, path: str, **params: Any) -> Response:
        return self.request("GET", path, params=params or None)

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        resp = self.request(method, path, body, params=params or None)
        assert 200 <= resp.status < 300, (method, path, resp)
        return resp.body

    # --- tasks ------------------------------------------------------------------

    def submit(self, tasks: list[dict[str, Any]]) -> list[str]:
        body = self.ok("POST", "/tasks", tasks)
        return [item["_id"] for item in body["_items"]]

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/tasks/{task_id}"))

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/tasks/{task_id}/history")["_items"])

    def logs(self, task_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/tasks/{task_id}/logs"))

    def patch(self, task_id: str, changes: dict[str, Any]) -> Response:
        return self.request("PATCH", f"/tasks/{task_id}", changes)

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.ok("GET", "/workers")["_items"]}

    def find_all(self, where: dict[str, Any], projection: dict[str, int]) -> list[dict[str, Any]]:
        """Every task matching ``where``, page by page (1,000 a page)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.ok(
                "GET",
                "/tasks",
                where=where,
                projection=projection,
                max_results="1000",
                page=str(page),
            )
            out += body["_items"]
            if len(out) >= body["_meta"]["total"] or not body["_items"]:
                return out
            page += 1

    def count(self, where: dict[str, Any] | None = None) -> int:
        params: dict[str, Any] = {"max_results": "1"}
        if where is not None:
            params["where"] = where
        return int(self.ok("GET", "/tasks", **params)["_meta"]["total"])

    def wait_state(
        self, task_id: str, states: str | Iterable[str], timeout: float
    ) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else set(states)
        found: dict[str, Any] = {}

        def check() -> bool:
            found.clear()
            found.update(self.task(task_id))
            return found["state"] in wanted

        try:
            wait_for(check, timeout, f"task {task_id} to be {sorted(wanted)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; task: {found}") from None
        return dict(found)
