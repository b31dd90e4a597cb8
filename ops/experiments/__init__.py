"""Offline experiments that compare learners head to head and write their reports."""
