"""Operations: everything that runs the product rather than being it.

- ``ops.cli``: the ``recast`` command line (one module per command group).
- ``ops.stack``: the embedded local stack (Postgres, a Kafka broker, Redis) without Docker.
- ``ops.sim``: simulated shoppers and the online demo built on them.
- ``ops.bench``: benchmarks and the load generator they share.
- ``ops.experiments``: offline experiments with their reports.
"""
