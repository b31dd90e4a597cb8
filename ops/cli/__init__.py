"""The ``recast`` command line: ``app.py`` builds the Typer app; each other module is one command group."""
