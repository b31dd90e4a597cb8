"""`recast audit --html` as an operator runs it, opened in headless Chromium: the screenshot shows the flag box at
the top and the plots below it, and the file needs no network."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ops.audit.report import AFTER, SOURCE_COLORS
from tests.support.audit import recast_audit, seed_audit
from tests.support.browser import screenshot

FLAG_BOX, CLEAR_BOX = "#fde2e1", "#e8f5e9"  # the report's CSS backgrounds


def rows_of(png: Path, color: str, tolerance: int = 4) -> np.ndarray:
    """The y of every pixel of ``color`` in the screenshot."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.nonzero((np.abs(pixels - rgb) <= tolerance).all(axis=-1))[0]


@pytest.fixture
def seeded(database_url):
    return database_url, seed_audit(database_url)


def test_the_report_renders_its_flag_at_the_top_and_its_plots_in_chromium(seeded, chromium, tmp_path):
    url, runs = seeded
    report = tmp_path / "audit.html"
    proc = recast_audit("--run", str(runs.run_ids[0]), "--html", str(report), url=url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"audit report: {report} (run {runs.run_ids[0]}; flagged: request:web, "
                                   "history:new)")  # fmt: skip
    page = report.read_text()
    # Self-contained: four PNG plots in data URIs, nothing fetched.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    assert "Flagged segments (2)" in page and "request:web" in page

    shot = screenshot(chromium, report, tmp_path / "audit.png")
    flag = rows_of(shot, FLAG_BOX)
    assert flag.size > 20_000 and flag.min() < 250, "the flag box is not at the top of the page"
    for color in (SOURCE_COLORS[0], SOURCE_COLORS[2], AFTER):  # purchase and click anchors; the child's bars
        plotted = rows_of(shot, color)
        assert plotted.size > 500, f"no plot drew {color}: the images did not render"
        assert plotted.min() > flag[flag < 400].max(), "a plot sits above the flag box"
    assert rows_of(shot, CLEAR_BOX).size == 0


def test_a_report_without_flags_says_so(seeded, chromium, tmp_path):
    url, runs = seeded
    report = tmp_path / "clear.html"
    proc = recast_audit("--run", str(runs.run_ids[1]), "--runs", "1", "--html", str(report), url=url)
    assert proc.returncode == 0, proc.stderr
    assert "No segment flagged" in report.read_text()
    shot = screenshot(chromium, report, tmp_path / "clear.png")
    clear = rows_of(shot, CLEAR_BOX)
    assert clear.size > 10_000 and clear.min() < 250
    assert rows_of(shot, FLAG_BOX).size == 0 and rows_of(shot, AFTER).size > 500
