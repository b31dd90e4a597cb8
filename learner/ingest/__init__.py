"""Kafka -> reward groups in Postgres (issue 5): ``attribution`` holds the rules as plain
functions, ``store`` writes one batch in one transaction, ``consumer`` runs the loop."""
