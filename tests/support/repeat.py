"""A pytest plugin to run tests many times in one session: ``pytest -p tests.support.repeat --repeat 20 NODE...``.

Each selected test runs ``--repeat`` times in a row (as ``test[r0]`` ... ``test[r19]``), sharing the session's
and modules' fixtures (the stack, the trained checkpoint, an API server) as a normal run would, so a 20x
stress run of a fault test costs its own time only. docs/fault-tests.md records such runs."""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    parser.addoption("--repeat", type=int, default=1, help="run every selected test this many times in a row")


def pytest_generate_tests(metafunc) -> None:
    times = metafunc.config.getoption("repeat")
    if times > 1:
        metafunc.fixturenames.append("_repeat")
        metafunc.parametrize("_repeat", range(times), ids=lambda r: f"r{r}")
