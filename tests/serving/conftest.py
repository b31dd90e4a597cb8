"""Serving fixtures live in tests/conftest.py (``tiny_checkpoint`` is shared with tests/ops)."""
