"""The worker agent: one websocket to the server's gateway, a heartbeat,
claims sized to what is free, a runner per attempt, and reports.

Main loop + named side tasks: ``run()`` connects (and reconnects) until told
to stop; each connection has a reader and a heartbeat task. A signal only
sets the stop flag. While the server is unreachable the tasks keep running
and their end reports wait in memory (the task cache); past
``server_timeout_s`` the agent assumes its attempts were abandoned, kills them
and drops the cache.

Fencing (worker/lease.py): the agent holds a lease that only answers from the
server renew (a ``heartbeat_ack``, ``welcome``, ``assigned``, ``accepted`` or
``refused``, each by the send time of the frame it answers). When it lapses,
the reaper sidecar (which runs even while this process is frozen) and the
agent (alive but cut off) stop every task, so that nothing is still running
when the server hands the task to another worker; their reports say
``abandoned (worker stopped)``, and on reconnect the server either applies
them or refuses them (409, superseded).

The agent is one class, :class:`Agent`, built in layers, one module each:
``base`` (its state, sending, what is free, the idle test), ``fencing``
(heartbeats and the lease), ``jobs`` (running attempts: start, time limits,
follow, output), ``slots`` (claims, the prefetch queue, handing back) and
``session`` (the connection loop, the frames it answers, stopping).
``config`` holds what it is told (:class:`WorkerConfig`) and its constants.
"""

from worker.agent.config import DEFAULT_PREFETCH, STOPPED, Job, WorkerConfig
from worker.agent.session import Agent

__all__ = ["DEFAULT_PREFETCH", "STOPPED", "Agent", "Job", "WorkerConfig"]
