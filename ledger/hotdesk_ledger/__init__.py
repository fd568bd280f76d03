"""hotdesk_ledger: the desk and user aggregates, the JetStream event store and the
projection runner.

* :mod:`.aggregates` — frozen ``DeskState``/``UserState``, pure ``decide``/``evolve``,
  ``plan_login`` for the exclusive policy.
* :mod:`.errors` — ``DomainError`` and its subclasses, each with a stable ``code``.
* :mod:`.store` — ``EventStore``: ``load``, ``last``, ``newest_first``, ``append`` with
  optimistic concurrency; :mod:`.snapshot` reads what a stream holds now, once.
* :mod:`.handler` — ``Ledger.execute(command)``: load, decide, append, retry.
* :mod:`.projection` — ``Projection`` protocol and ``ProjectionRunner`` (durable
  consumer into a KV read model; ``rebuild``); :mod:`.occupancy` is a ready example.
* :mod:`.connection` — the one place nats-py internals are read.
"""
