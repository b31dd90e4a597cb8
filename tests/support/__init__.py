"""Helpers the tests share, in one place: test modules import from here and never from each other.

- :mod:`tests.support.paths`: the repository root and the shipped data set.
- :mod:`tests.support.wait`: ``wait_for``, the one way a test waits (on state, bounded, saying what never happened).
- :mod:`tests.support.logs`: ``LogWatcher``, to wait on a log line of an in-process component.
- :mod:`tests.support.data`: the synthetic data set, "the first N rows of valid.csv", its histories.
- :mod:`tests.support.cli`: ``recast(...)`` as a subprocess, ``recast_env(...)``, ``start_recast(...)``.
- :mod:`tests.support.databases`: fresh migrated databases, row counts, table locks and backend probes.
- :mod:`tests.support.kafka`: produce, consume until a condition holds, group membership, committed offsets.
- :mod:`tests.support.events`: impressions and outcomes at fixed event times.
- :mod:`tests.support.api`: a real API process (uvicorn in a thread) and its Prometheus metrics.
- :mod:`tests.support.compose`: docker-compose.yml read the way Compose reads it (interpolation, schema),
  and command lines parsed by the click/Typer CLI they start.
"""
