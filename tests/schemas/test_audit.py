"""The audit's filters refuse what they cannot apply, with the reason; the constants schemas/ repeats (it imports none
of our packages) stay equal to their sources."""

from datetime import UTC, datetime

import pytest

from recast.segments import DIMENSIONS
from recast.signals.groups import ANCHOR_SOURCES
from schemas import audit, tables
from schemas.audit import AuditFilter, AuditFilterError


def test_the_repeated_constants_match_their_sources():
    assert tables.ANCHOR_SOURCES == ANCHOR_SOURCES
    assert audit.DIMENSIONS == DIMENSIONS == tuple(audit.LEDGER_COLUMN)


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"run_id": 0}, "run must be a run id"),
    ({"segment": "age:young"}, "the dimension must be one of"),
    ({"segment": "request: "}, "name a segment"),
    ({"since": datetime(2026, 1, 2)}, "since needs a timezone"),
    ({"since": datetime(2026, 1, 2, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)}, "must be before until"),
    ({"limit": 501}, "limit must lie in 1..500"),
    ({"offset": -3}, "offset must be >= 0"),
])  # fmt: skip
def test_bad_filters_say_why(kwargs, reason):
    with pytest.raises(AuditFilterError, match=reason):
        AuditFilter(**kwargs)


def test_a_bare_segment_matches_every_dimension_a_qualified_one_only_its_own():
    bare, qualified = AuditFilter(segment="unknown"), AuditFilter(segment="category:unknown")
    assert bare.matches("request", "unknown") and bare.matches("category", "unknown")
    assert qualified.matches("category", "unknown") and not qualified.matches("request", "unknown")
    assert not bare.matches("request", "web") and AuditFilter().matches("request", "web")


def test_pages_point_at_the_next_one_until_the_last():
    assert audit.page(5, AuditFilter(limit=2)) == {"total": 5, "offset": 0, "limit": 2, "next_offset": 2}
    assert audit.page(5, AuditFilter(limit=2, offset=4))["next_offset"] is None
