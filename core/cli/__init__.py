"""dkronctl: the command-line interface (``core.cli.main:app``; one module per command
group). Nothing is exported: the entry point is the typer app in ``main``."""

__all__: list[str] = []
