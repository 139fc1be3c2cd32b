"""The README's curl examples, run as written against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import Api

README = Path(__file__).resolve().parents[2] / "README.md"


def curl_examples() -> list[str]:
    text = README.read_text()
    start = text.index("The examples below are run by")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None
    commands, current = [], ""
    for line in block.group(1).splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += stripped.removesuffix("\\") + " "
        if not stripped.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_readme_curl_examples(api: Api) -> None:
    env = {
        **os.environ,
        "BANYAN": str(api.client.make_url("")).rstrip("/"),
        "TOKEN": api.tokens["alice"],
    }
    commands = curl_examples()
    assert len(commands) >= 10
    for command in commands:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, (command, err)
        body = json.loads(out)
        assert not (isinstance(body, dict) and body.get("_status") == "ERR"), (command, body)
        if "-X POST" in command and isinstance(body, dict) and "_id" in body:
            env["PARENT" if "ID" in env else "ID"] = body["_id"]
    # What the examples did: the group released its continuation, which was then cancelled.
    assert (await api.task(env["PARENT"]))["state"] == "terminated"
    assert (await api.task(env["ID"]))["state"] == "cancelled"
