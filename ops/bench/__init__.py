"""Benchmarks (``python -m ops.bench.<name>``): each prints its figures."""
