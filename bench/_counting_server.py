"""``banyan-server`` with one addition for the benchmarks: on SIGUSR1 it
writes the group-commit counters of its writer (``Database.batches`` =
committed transactions, ``Database.ops`` = write operations in them) as JSON
to ``$BANYAN_BENCH_COUNTERS``. Everything else is ``server.cli.main``.

    python bench/_counting_server.py --port P --db PATH   # same flags as banyan-server
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import server.cli as cli
from server.keys import STORE

_real_create_app = cli.create_app  # type: ignore[attr-defined]


def _create_app(settings: Any, **kwargs: Any) -> Any:
    app = _real_create_app(settings, **kwargs)
    target = Path(os.environ["BANYAN_BENCH_COUNTERS"])

    async def install(app: Any) -> None:
        def dump() -> None:
            db = app[STORE].db
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps({"batches": db.batches, "ops": db.ops}))
            os.replace(tmp, target)

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)

    app.on_startup.append(install)
    return app


cli.create_app = _create_app  # type: ignore[attr-defined]  # serve() looks it up at call time

if __name__ == "__main__":
    sys.exit(cli.main())
