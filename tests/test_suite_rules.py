"""The rules the suite keeps, checked: test modules import helpers from tests/support, never each other;
nothing sleeps a fixed time except wait_for's poll; the caller's RECAST_* variables never reach a test."""

from __future__ import annotations

import ast
import os

from tests.support.paths import ROOT

TESTS = ROOT / "tests"


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in sorted(TESTS.rglob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_test_module_imports_another_test_module_or_a_conftest():
    offending = {
        path: sorted(n for n in imported(tree) if n.startswith("tests.")
                     and any(part.startswith("test_") or part == "conftest" for part in n.split(".")[1:]))
        for path, tree in modules().items()
    }  # fmt: skip
    assert not {p: n for p, n in offending.items() if n}, "import shared helpers from tests.support instead"


def test_no_fixed_sleep_outside_wait_for():
    sleeps = []
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "sleep":
                sleeps.append(f"{path}:{node.lineno}")
    assert [s.split(":")[0] for s in sleeps] == ["tests/support/wait.py"], f"wait on state with wait_for: {sleeps}"


def test_the_callers_recast_variables_do_not_reach_the_tests():
    """The conftest removes every RECAST_* of the shell that started pytest, so settings are the defaults."""
    from schemas.settings import Settings, get_settings

    assert not [name for name in os.environ if name.startswith("RECAST_")]
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert Settings().model_dump() == defaults and get_settings().model_dump() == defaults
