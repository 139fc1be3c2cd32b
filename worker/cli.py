"""``banyan-worker``: run tasks from a Banyan server on this machine.

banyan-worker [--server URL... --token T] [--ca-cert PATH] [--name N] [--cores C] [--memory M]
              [--gpus G] [--resource k=v]... [--queue Q]... [--drain] [--burst]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from banyan.client import check_tls
from banyan.client.discovery import add_connection_options, client_file, discover
from banyan.errors import BanyanError
from banyan.logs import LOG_FORMATS, setup_logging
from banyan.units import parse_cores, parse_duration, parse_memory
from worker.agent import DEFAULT_PREFETCH, Agent, WorkerConfig
from worker.capacity import detect
from worker.containment import KINDS

EPILOG = """\
examples:
  banyan-worker                               # finds the local server and its token
  banyan-worker --server http://head:5100 --token byn_... --queue gpu --gpus 2
  banyan-worker --server https://head:5100 --ca-cert ca.pem  # HTTPS, a private CA
  banyan-worker --server http://head-a:5100 --server http://head-b:5100  # failover
  banyan-worker --cores 4 --memory "16 GiB" --resource licences=2
  banyan-worker --drain                       # on SIGTERM, finish running tasks first

Without --drain, SIGTERM/SIGINT stop the running tasks (they go back to the
queue under the retry rule) and the worker exits 0 after reporting them.

exit codes:
  0   stopped by SIGTERM/SIGINT, or --burst and nothing is left to run
  2   bad arguments or settings, or the server's TLS cannot be verified
  75  another process is connected as this worker (close code 4409): two
      workers started with one worker token; give each its own token
  77  the server refused the token: 401 (unknown or revoked) or 403 (a
      provider token: the worker needs a worker or admin token), the token
      was revoked while connected (close code 4401), or --name is not the
      worker token's name (close code 4403)
An unreachable server is not an exit: the worker retries every 2 s. Given
several servers (--server A --server B, or BANYAN_SERVER=A,B; they share one
database), it tries the next one at once when its connection cannot be made
or ends, and re-attaches there with its running tasks.

A worker token names one worker: the worker's name is the token's name, and
one process at a time may use it. To run many workers, give each a token
(banyan-server token create --role worker --name gpu-7, or POST /workers).
"""


def _resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=amount, got {text!r}")
    try:
        return name, float(amount)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"amount of {name} is not a number: {amount!r}") from exc


def _memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _count(text: str) -> int:
    """A whole number of things, 0 or more (a negative one is refused, not clamped)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _cores(text: str) -> float:
    try:
        return parse_cores(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def warn_if_tasks_can_read_admin_token(log: logging.Logger) -> bool:
    """Tasks run as this worker's user: if that user can read the local
    server's client file, any task can read the admin token in it (whatever
    the environment says). Say so once; the cure is another user for workers."""
    path = client_file()
    try:
        readable = path.is_file() and os.access(path, os.R_OK) and '"token"' in path.read_text()
    except OSError:
        return False
    if readable:
        log.warning(
            "tasks run as this user and can read the admin token in %s; run workers as "
            "another user to keep it from them (docs: guide/workers, 'What a task gets')",
            path,
        )
    return readable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banyan-worker",
        description="Run tasks from a Banyan server on this machine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(
        parser, token_help="worker or admin token (default: $BANYAN_TOKEN or local)"
    )
    parser.add_argument(
        "--name",
        help="worker name; with a worker token, the token's name (default; another name is "
        "refused), with an admin token any name (default: hostname:pid)",
    )
    parser.add_argument("--cores", type=_cores, help="cores to offer (default: CPU affinity)")
    parser.add_argument("--memory", type=_memory, help='memory to offer, e.g. "16 GiB"')
    parser.add_argument("--gpus", type=int, help="GPUs to offer (default: nvidia-smi's count)")
    parser.add_argument(
        "--resource",
        type=_resource,
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a custom resource to offer (repeatable)",
    )
    parser.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="queue to serve (repeatable; default: default)",
    )
    parser.add_argument(
        "--time-limit",
        type=_duration,
        metavar="DURATION",
        help="this worker's lifetime from its start, as a batch allocation's (e.g. '2 hours'): "
        "it is given only tasks whose time_limit fits in what is left, and stops at its end",
    )
    parser.add_argument("--drain", action="store_true", help="on SIGTERM finish running tasks")
    parser.add_argument("--burst", action="store_true", help="exit when nothing is left to run")
    parser.add_argument(
        "--prefetch",
        type=_count,
        default=DEFAULT_PREFETCH,
        metavar="N",
        help="attempts to hold queued beyond what runs, started the moment a slot frees "
        f"(the server caps it with max_prefetch; 0 turns it off; default {DEFAULT_PREFETCH})",
    )
    parser.add_argument(
        "--enforce-memory",
        action="store_true",
        help="make each task's memory request its hard limit (cgroup v2 memory.max; "
        "ignored with a warning where the memory controller is not available)",
    )
    parser.add_argument(
        "--containment",
        choices=KINDS,
        default="auto",
        help="how a task's escaped processes (setsid, daemons) are tracked: a cgroup v2 "
        "per attempt where writable, else the worker as child subreaper (default auto)",
    )
    parser.add_argument(
        "--usage-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to sample memory and CPU of each task (default 2)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=os.environ.get("BANYAN_LOG_FORMAT", "text"),
        help="text, or json: one object a line (default: $BANYAN_LOG_FORMAT or text)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup_logging(
            level=logging.DEBUG if args.verbose else logging.INFO, log_format=args.log_format
        )
        connection = discover(args.server, args.token, args.ca_cert)
        asyncio.run(check_tls(connection))
        capacity, gpu_indices = detect(
            cores=args.cores, memory=args.memory, gpus=args.gpus, custom=dict(args.resource)
        )
    except BanyanError as exc:
        print(f"banyan-worker: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"banyan-worker: {exc}", file=sys.stderr)
        return 2
    config = WorkerConfig(
        connection=connection,
        name=args.name,  # None: the server names it after its token (or hostname:pid)
        capacity=capacity,
        gpu_indices=gpu_indices,
        queues=args.queues or ["default"],
        drain=args.drain,
        burst=args.burst,
        prefetch=args.prefetch,
        usage_interval_s=args.usage_interval,
        log_format=args.log_format,
        enforce_memory=args.enforce_memory,
        containment=args.containment,
        time_limit_s=args.time_limit,
    )
    warn_if_tasks_can_read_admin_token(logging.getLogger("worker"))
    return asyncio.run(Agent(config).run())


if __name__ == "__main__":
    sys.exit(main())
