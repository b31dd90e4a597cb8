from __future__ import annotations

import pytest

from tests.support.browser import ensure_chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by the test set-up when missing (see ``browser.ensure_chromium``)."""
    return ensure_chromium()
