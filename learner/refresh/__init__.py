"""The nightly refresh: logged reward groups -> a child checkpoint -> the gate -> the registry.

``run.py`` orchestrates one attempt (lock, run record, phases); ``data.py`` reads the window's
groups from Postgres; ``learn.py`` continues SFT, runs the RL step and updates the scorers;
``gate.py`` scores the candidate against the served model and decides. The Celery task in
``learner/tasks.py`` is a thin call into :func:`learner.refresh.run.refresh`.
"""
