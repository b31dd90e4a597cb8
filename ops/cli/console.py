"""What every ``recast`` command does the same way: log to stderr (or a file), size torch's
thread pool, and fail with ``error: <reason>`` and exit code 2 on bad input."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import typer

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(threads: int | None = None, log_file: Path | None = None) -> None:
    """INFO logs on stderr (stdout stays machine-readable); ``threads`` sizes torch's pool.

    ``log_file``: INFO goes there instead and the terminal shows warnings only, for commands whose
    terminal shows progress bars and result tables."""
    if log_file is None:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setLevel(logging.INFO)
        to_terminal = logging.StreamHandler(sys.stderr)
        to_terminal.setLevel(logging.WARNING)
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=[to_file, to_terminal])
    if threads is not None:
        import torch  # only the commands that compute pay for the import

        torch.set_num_threads(threads)


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
