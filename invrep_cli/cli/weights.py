"""Weights registry commands (not yet implemented)."""

from __future__ import annotations

import typer

app = typer.Typer(help="List and download registered weights.", no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """List registered weights."""
    raise typer.Exit(3)
