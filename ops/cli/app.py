"""``recast``: the command line of the Recast recommender.

Data -> split -> train -> eval on the shipped data set:

    recast split --data data/amazon18-industrial --out runs/split
    recast train --data data/amazon18-industrial --train runs/split/train.csv --preset default --out runs/sft
    recast eval  --data data/amazon18-industrial --split runs/split/heldout.csv --checkpoint runs/sft

The embedded stack (Postgres, Kafka, Redis on 127.0.0.1): ``recast up``, ``recast status``, ``recast down``.
The ingestion worker (Kafka -> reward groups): ``recast ingest``.
The loop: ``recast worker`` and ``recast beat`` (Celery), ``recast refresh`` (one now), ``recast runs``,
``recast rollback``.
Reliability: ``recast chaos`` (faults under traffic; ``make soak`` and ``make bench-overload`` for the rest).
RL from an SFT checkpoint: ``recast rl``; ReCast vs the baseline, head to head: ``recast experiment``.
The audit of repaired signals per segment: ``recast audit [--run ID] [--segment S] [--html FILE]``.
The project's own SIDs: ``recast sids fit``, ``recast sids assign``, ``recast sids measure``.
The catalog's versions: ``recast items retire ID... [--reason out_of_stock]``, ``recast items versions``.

Defaults come from ``RECAST_*`` environment variables (see ``schemas/settings.py``).
Each command group lives in its own module of this package; :func:`main` is the console entry point.
"""

from __future__ import annotations

import typer

from ops.cli import audit, demo, ingest, items, loop, model, registry, reliability, rl, serve, sids, stack

app = typer.Typer(
    help="Recast: a generative recommender over semantic IDs. Run a command with --help for its options.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for group in (model, sids, stack, ingest, loop, rl, serve, demo, registry, items, audit, reliability):
    group.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
