"""The embedded stack: Postgres, a Kafka-compatible broker and Redis on 127.0.0.1 (see ``embedded.py``)."""

from ops.stack.embedded import StackState, down, migrate, start_learner, status, stop_learner, up

__all__ = ["StackState", "down", "migrate", "start_learner", "status", "stop_learner", "up"]
