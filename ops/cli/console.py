"""What every ``recast`` command does the same way: log to stderr (or a file), size torch's
thread pool, and fail with ``error: <reason>`` and exit code 2 on bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def database(what: str = "the database") -> Iterator:
    """An engine on ``$RECAST_DATABASE_URL`` for one command; an unreachable database ends the command with the
    driver's reason (exit 2), and the engine is disposed of either way."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from schemas.settings import get_settings

    engine = create_engine(get_settings().database_url)
    try:
        yield engine
    except OperationalError as exc:
        fail(f"{what} is unreachable ($RECAST_DATABASE_URL): {exc.orig or exc}")
    finally:
        engine.dispose()


# Libraries whose INFO lines drown a service's own (kafka-python logs every connection and rebalance step).
THIRD_PARTY = ("kafka", "sqlalchemy", "urllib3", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access",
               "asyncio", "alembic", "filelock", "transformers", "torch", "celery", "kombu", "redis", "multipart")


def setup_service(settings, filters: tuple[logging.Filter, ...] = ()) -> None:
    """A long-running service's logging: one line per record on stderr, a JSON object by default
    (``RECAST_LOG_FORMAT``), our loggers at ``RECAST_LOG_LEVEL`` and other libraries' at
    ``RECAST_LOG_THIRD_PARTY_LEVEL``. ``filters`` add fields to every record (the API's request id and key name)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level"}))  # fmt: skip
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for f in filters:
        handler.addFilter(f)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(settings.log_third_party_level.upper())
