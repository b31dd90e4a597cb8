"""The customer segments the audit reports on: what the storefront said, and two the audit derives itself.

Every reward group belongs to one segment of each *dimension*:

- ``request``: the segment the storefront sent with the request, kept on the impression and the group.
  The API records ``default`` when a storefront sends none, so ``default``, a blank or a missing value
  all read as ``unknown``;
- ``history``: how much the shopper has done before, from the length of the history the request sent:
  ``new`` (at most ``new_max`` items), ``loyal`` (at least ``loyal_min``), ``returning`` in between;
- ``category``: the top-level category the history is mostly in (``items.json``'s ``categories``);
  a history with no categorised item is ``unknown``.

Nothing is ever dropped: a value the audit cannot name is the segment ``unknown``. Pure: plain values in,
strings out; reading ``items.json`` is :func:`recast.dataset.load_categories`.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

UNKNOWN = "unknown"
DIMENSIONS = ("request", "history", "category")
HISTORY_SEGMENTS = ("new", "returning", "loyal")


@dataclass(frozen=True)
class SegmentRules:
    new_max: int = 2  # histories of at most this many items: new
    loyal_min: int = 7  # at least this many: loyal

    def __post_init__(self) -> None:
        if self.new_max < 0 or self.loyal_min <= self.new_max:
            raise ValueError(f"the history thresholds need 0 <= new_max < loyal_min, got new_max={self.new_max}, "
                             f"loyal_min={self.loyal_min}")  # fmt: skip


def request_segment(raw: str | None) -> str:
    """
    >>> [request_segment(s) for s in ("web", " app ", "", None, "default")]
    ['web', 'app', 'unknown', 'unknown', 'unknown']
    """
    value = (raw or "").strip()
    return UNKNOWN if value in ("", "default") else value


def history_segment(length: int, rules: SegmentRules) -> str:
    """
    >>> [history_segment(n, SegmentRules(2, 7)) for n in (0, 2, 3, 6, 7, 40)]
    ['new', 'new', 'returning', 'returning', 'loyal', 'loyal']
    """
    return "new" if length <= rules.new_max else "loyal" if length >= rules.loyal_min else "returning"


def top_category(raw) -> str | None:
    """The top-level category of an ``items.json`` ``categories`` value: a list (the first entry, or the first
    entry of its first path), a list written as text, or a path such as ``"Tools > Hand Tools"``.

    >>> [top_category(v) for v in (["Tools", "Hand Tools"], [["Tools", "Saws"]], "['Tools', 'Saws']",
    ...                            "Tools > Saws", "Tools|Saws", "", None, [])]
    ['Tools', 'Tools', 'Tools', 'Tools', 'Tools', None, None, None]
    """
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                return top_category(json.loads(text))
            except ValueError:
                try:
                    return top_category(ast.literal_eval(text))
                except (ValueError, SyntaxError):
                    return None
        for separator in (">", "|"):
            text = text.split(separator)[0]
        return text.strip() or None
    if isinstance(raw, list | tuple) and raw:
        return top_category(raw[0])
    return None


def history_category(history: Sequence[str], categories: dict[str, str]) -> str:
    """The history's most frequent top-level category (a tie goes to the most recent); ``unknown`` if none.

    >>> history_category(["1", "2", "3", "4"], {"1": "Tools", "2": "Paint", "4": "Paint"})
    'Paint'
    >>> history_category(["1", "2"], {"1": "Tools", "2": "Paint"}), history_category(["9"], {})
    ('Paint', 'unknown')
    """
    known = [(categories[i], n) for n, i in enumerate(history) if i in categories]
    if not known:
        return UNKNOWN
    counts = Counter(c for c, _ in known)
    last = {c: n for c, n in known}
    return max(counts, key=lambda c: (counts[c], last[c]))


def segments_of(segment: str | None, history: Sequence[str], categories: dict[str, str],
                rules: SegmentRules) -> dict[str, str]:  # fmt: skip
    """One segment per dimension for a reward group.

    >>> segments_of("web", ["1", "2", "3"], {"3": "Tools"}, SegmentRules())
    {'request': 'web', 'history': 'returning', 'category': 'Tools'}
    """
    return {"request": request_segment(segment), "history": history_segment(len(history), rules),
            "category": history_category(history, categories)}  # fmt: skip
