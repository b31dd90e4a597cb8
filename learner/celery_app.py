"""The Celery app of the learner: Redis as broker and result backend, JSON only, late acknowledgement.

    celery -A learner.celery_app worker --concurrency=1     # or: recast worker
    celery -A learner.celery_app beat                       # or: recast beat

Nothing is read at import: the configuration is built from ``Settings`` when Celery first asks for
it (``on_configure``), so importing this module (as ``-A`` does) needs no environment. Beat runs
``refresh_policy`` on ``RECAST_REFRESH_SCHEDULE`` (nightly at 03:00 UTC by default).

Why these choices:
- ``task_acks_late`` with ``task_reject_on_worker_lost``: a refresh whose worker dies is handed to a
  worker again (after ``celery_visibility_timeout_s`` on Redis) instead of being lost; the task is
  safe to repeat (``learner/refresh/run.py``).
- ``worker_prefetch_multiplier = 1``: a worker busy training does not sit on the next task.
- Beat's refresh ticks expire after one schedule period: ticks that queued behind a long refresh are
  dropped, not run back to back.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import crontab, schedule

from schemas.settings import Settings, get_settings, parse_schedule

QUEUE = "learner"
app = Celery("recast", include=["learner.tasks"])


def beat_schedule(text: str) -> tuple[schedule, float]:
    """The Celery schedule for ``RECAST_REFRESH_SCHEDULE`` and how long a tick may wait before it expires.

    >>> beat_schedule("every 30s")[1], beat_schedule("0 3 * * *")[1]
    (30.0, 3600.0)
    """
    kind, value = parse_schedule(text)
    if kind == "every":
        return schedule(timedelta(seconds=value)), float(value)
    minute, hour, day_of_month, month_of_year, day_of_week = value
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week), 3600.0  # fmt: skip


def celery_config(settings: Settings) -> dict:
    every, expires = beat_schedule(settings.refresh_schedule)
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": QUEUE,
        "broker_transport_options": {"visibility_timeout": settings.celery_visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        "result_expires": timedelta(days=7),
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "refresh-policy": {
                "task": "learner.tasks.refresh_policy",
                "schedule": every,
                "kwargs": {"trigger": "beat"},
                "options": {"expires": expires},
            }
        },
    }


@app.on_configure.connect
def _configure(sender: Celery, **_) -> None:
    sender.conf.update(celery_config(get_settings()))
