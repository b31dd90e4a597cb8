"""What every ``recast`` command does the same way: log to stderr, size torch's thread
pool, and fail with ``error: <reason>`` and exit code 2 on bad input."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(threads: int | None = None) -> None:
    """INFO logs on stderr (stdout stays machine-readable); ``threads`` sizes torch's pool."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    if threads is not None:
        import torch  # only the commands that compute pay for the import

        torch.set_num_threads(threads)


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
