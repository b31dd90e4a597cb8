"""The dependency audit (``make audit-deps``, run by CI): ``pip-audit`` over the installed environment, where its
vulnerability service answers; where it does not (no network, a registry mirror without PyPI's JSON API), a
notice that the audit was skipped, and exit 0: an audit that cannot see the advisories proves nothing, and
a CI that fails for want of a network teaches people to ignore it.

    python -m ops.dependency_audit
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request


def probe_url() -> str:
    """The advisory endpoint pip-audit's default service reads, for the installed pip (a per-version page: a
    registry mirror may serve the project page and not these)."""
    from importlib.metadata import version

    return f"https://pypi.org/pypi/pip/{version('pip')}/json"


def service_reachable(timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(probe_url(), timeout=timeout) as resp:
            return resp.status == 200 and "vulnerabilities" in json.loads(resp.read())
    except (OSError, ValueError):
        return False


def main() -> int:
    if not service_reachable():
        print(f"notice: dependency audit skipped: the vulnerability service ({probe_url()}) is not reachable from "
              "here")  # fmt: skip
        return 0
    return subprocess.call([sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off"])


if __name__ == "__main__":
    sys.exit(main())
