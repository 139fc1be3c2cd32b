"""The parts of the ``Store`` contract (``server.stores.base``), one module per
area: ``values`` (what methods take and return), ``tasks`` (tasks, jobs,
statistics), ``attempts`` (claims, reports, memory usage), ``events``,
``workers`` (workers and their output) and ``tokens``. ``Store`` composes
them; the contract shared by every method is in ``server.stores.base``."""
