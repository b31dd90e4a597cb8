"""`recast audit` prints one refresh's per-segment table from the stored snapshots; bad requests exit 2."""

from __future__ import annotations

from ops.stack.servers import free_port
from tests.support.audit import recast_audit, seed_audit


def rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by segment name (the first column after the flag mark)."""
    out = {}
    for line in stdout.splitlines()[3:]:
        if line.startswith(("! ", "  ")):
            out[line[2:24].strip()] = [line[:1].strip(), *line[24:].split()]
    return out


def test_the_latest_run_by_default_one_run_and_one_segment_on_request(database_url):
    seeded = seed_audit(database_url)
    one, two = seeded.run_ids
    latest = recast_audit(url=database_url)
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.splitlines()[0] == f"run {two}: v-b -> v-c (rejected), 2026-12-02 03:00:00 UTC"
    table = rows(latest.stdout)
    assert list(table) == ["(all groups)", "request:app", "request:unknown", "history:loyal", "history:returning",
                           "category:Tools", "category:unknown"]  # fmt: skip
    assert table["(all groups)"][:6] == ["", "4", "50%", "50%", "0%", "2"]
    assert latest.stdout.splitlines()[-1] == "flagged: none"

    web = recast_audit("--run", str(one), "--segment", "request:web", url=database_url)
    assert web.returncode == 0, web.stderr
    table = rows(web.stdout)
    assert list(table) == ["(all groups)", "request:web"]
    assert table["request:web"][:8] == ["!", "2", "100%", "100%", "0%", "2", "purchase:1", "click:1"]
    assert web.stdout.splitlines()[-1] == "flagged: request:web (repaired share +0.500 against the run)"
    by_version = recast_audit("--version", "v-b", url=database_url)
    assert by_version.stdout.splitlines()[0].startswith(f"run {one}: v-a -> v-b (published)")


def test_bad_requests_say_why_and_exit_2(database_url):
    seed_audit(database_url)
    for args, reason in [(("--run", "99"), "no audit snapshot for run 99"),
                         (("--segment", "age:young"), "the dimension must be one of request, history, category"),
                         (("--version", "nope"), "no audit snapshot for version nope")]:  # fmt: skip
        proc = recast_audit(*args, url=database_url)
        assert proc.returncode == 2 and reason in proc.stderr, proc.stderr
    down = recast_audit(url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    assert down.returncode == 2 and "unreachable" in down.stderr
