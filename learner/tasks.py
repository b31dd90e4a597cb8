"""Celery tasks: thin, idempotent calls into plain ``learner`` functions (they take primitives only)."""

from __future__ import annotations

from dataclasses import asdict

from learner.celery_app import app


@app.task(name="learner.tasks.refresh_policy", bind=True)
def refresh_policy(self, trigger: str = "beat", **overrides) -> dict:
    """One refresh attempt (``learner.refresh.run.refresh``); ``overrides`` replace RefreshConfig fields.

    Safe to run again after a crash: nothing is consumed until a refresh publishes, and a second
    attempt while one runs is refused by the lock and recorded as such."""
    from learner.refresh.run import refresh
    from schemas.settings import get_settings

    return asdict(refresh(get_settings(), trigger=trigger, task_id=self.request.id, **overrides))
