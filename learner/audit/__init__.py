"""The audit of repaired signals: ``figures.py`` computes the per-segment figures (pure), ``record.py`` builds a
refresh's repair-ledger rows and snapshot and writes them in the run's final transaction."""
