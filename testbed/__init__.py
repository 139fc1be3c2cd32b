"""One harness for the tests and the benchmarks: a real ``banyan-server``
process on a free loopback port with its own SQLite file, real
``banyan-worker`` processes, a small blocking JSON client, and bounded waits.

Why a top-level folder: ``tests/`` and ``bench/`` both need it, and neither
should import the other (the benchmarks are not tests, and the tests must not
depend on benchmark code). It is not an installed package (``pyproject``'s
package list names only ``banyan``, ``server``, ``worker`` and ``tui``), so
nothing shipped can import it. pytest finds it through ``pythonpath = ["."]``;
a benchmark run as a script (``python bench/x.py``) puts the repository root on
``sys.path`` when ``from bench import ...`` fails, then imports the same
modules. It is not called ``harness``: under pytest's default import mode
``tests/faults/`` lands on ``sys.path`` and its ``harness.py`` would win.

Every process started here is remembered by PID and ended by PID, together
with whatever it left behind (its descendants, found before it was ended).
"""

from testbed.cluster import FAST, WORKER, Cluster
from testbed.http import Http, Response
from testbed.procs import BIN, Proc, clean_env, free_port, wait_for
from testbed.server import SERVER, Server

__all__ = [
    "BIN",
    "FAST",
    "SERVER",
    "WORKER",
    "Cluster",
    "Http",
    "Proc",
    "Response",
    "Server",
    "clean_env",
    "free_port",
    "wait_for",
]
