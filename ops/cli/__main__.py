"""``python -m ops.cli``: the ``recast`` command, as subprocesses and containers start it."""

from ops.cli.app import main

main()
