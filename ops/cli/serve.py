"""``recast serve`` (the API under uvicorn) and ``recast keys`` (make an API key and its digest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup_service
from schemas.settings import get_settings

keys_app = typer.Typer(help="Storefront API keys and the admin token: only their sha256 digests are configured.")


def serve(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint to serve (default: $RECAST_CHECKPOINT).")] = None,
    engine: Annotated[str | None, typer.Option(help="torch | vllm | generate (default: $RECAST_ENGINE).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 only inside a container.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str | None, typer.Option(help="Level of our loggers (default: $RECAST_LOG_LEVEL).")] = None,
) -> None:
    """Serve POST /v1/recommend and /v1/events, /healthz, /readyz, /metrics and /v1/admin (OpenAPI at /docs).

    Settings come from RECAST_* variables: RECAST_API_KEYS (digests from `recast keys new`),
    RECAST_BATCH_MAX_SIZE / RECAST_BATCH_MAX_WAIT_MS (micro-batching), RECAST_KAFKA_BOOTSTRAP,
    RECAST_SPOOL_DIR, RECAST_DATABASE_URL and RECAST_REGISTRY_POLL_S (hot-swap from the registry)."""
    import uvicorn

    from serving.api.app import create_app
    from serving.observe import RequestContext

    overrides = {k: v for k, v in {"checkpoint": checkpoint, "engine": engine, "log_level": log_level}.items()
                 if v is not None}  # fmt: skip
    try:
        settings = get_settings().model_validate({**get_settings().model_dump(), **overrides})
    except ValueError as exc:
        fail(str(exc))
    if settings.checkpoint is None and settings.registry_poll_s == 0:
        fail("nothing to serve: pass --checkpoint (or RECAST_CHECKPOINT), or let the registry watcher run")
    setup_service(settings, filters=(RequestContext(),))
    # log_config=None: uvicorn writes through our handler (JSON, quiet); our middleware writes the access log.
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to the grace), then shuts down.
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=settings.shutdown_grace_s)  # fmt: skip


@keys_app.command("new")
def new(
    admin: Annotated[bool, typer.Option(help="Make the admin token instead of a storefront key.")] = False,
    name: Annotated[str | None, typer.Option(help="The key's name in logs, metrics and rate limits.")] = None,
) -> None:
    """Print a fresh key (give it to the storefront) and its entry (configure it on the service)."""
    from serving.auth import new_key

    key, digest = new_key()
    entry = f"{name}:{digest}" if name and not admin else digest
    variable = "RECAST_ADMIN_TOKEN_SHA256" if admin else "RECAST_API_KEYS (comma-separated name:digest entries)"
    typer.echo(f"key:    {key}\ndigest: {entry}\nconfigure the digest in {variable}; the key is not stored anywhere")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
