"""``recast audit``: the audit of repaired signals per segment, as a table or a self-contained HTML report.

One command group of ``ops/cli``; it reads the snapshots each refresh stored (``audit_snapshots``) with
the statements the admin API runs (``schemas.audit``), so both show the same figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import database, fail


def audit(
    run: Annotated[int | None, typer.Option("--run", help="The refresh run to report (default: the latest).")] = None,
    version: Annotated[str | None, typer.Option(help="... or the run that trained this model version.")] = None,
    segment: Annotated[str | None, typer.Option(help="Only this segment: dimension:segment (request, history or "
                                                "category; e.g. history:new) or a bare segment name.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here (the reported run and "
                                              "every run before it) instead of printing the table.")] = None,
    runs: Annotated[int, typer.Option(help="With --html: how many runs, up to the reported one, to plot.")] = 30,
) -> None:
    """Per-segment figures of a refresh's repaired signals: groups, all-zero/repaired/unrepairable shares,
    anchor sources, mean reward, ΔHR@10 with its interval on the gate's slice, exposure before -> after,
    and the flagged segments. Exit 2 when there is nothing to show or the filter is bad."""
    from ops.audit.read import snapshots_up_to
    from schemas.audit import AuditFilter, AuditFilterError

    try:
        f = AuditFilter(run_id=run, version=version, segment=segment)
    except AuditFilterError as exc:
        fail(str(exc))
    with database() as engine:
        try:
            with engine.connect() as conn:
                snapshots = snapshots_up_to(conn, f, runs if html else 1)
        except LookupError as exc:
            fail(str(exc))
    reported = snapshots[-1]
    if html is None:
        from ops.audit.table import run_table

        typer.echo(run_table(reported, reported["segments"]))
        return
    from ops.audit.report import write

    path = write(snapshots, html.resolve())
    flagged = ", ".join(reported["flagged"]) or "none"
    first, last = snapshots[0]["run_id"], reported["run_id"]
    span = f"run {last}; flagged" if first == last else f"runs {first}-{last}; flagged in run {last}"
    typer.echo(f"audit report: {path} ({span}: {flagged})")


def register(app: typer.Typer) -> None:
    app.command()(audit)
