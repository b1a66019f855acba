"""The Typer app. Only this package imports Typer and Rich-for-output; the core raises
InvrepError and this layer turns it into one message and an exit code:
0 all done, 1 some files failed, 2 usage error (bad path, bad option, missing weights).

Heavy imports (torch, onnxruntime) happen inside commands so ``--help`` and ``--version`` are instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from invrep_cli import __version__
from invrep_cli.cli import bench, demo, export, restore, train, weights
from invrep_cli.cli.common import APP_SETTINGS, HelpCommand, console_err

app = typer.Typer(
    name="invrep",
    help="Unpaired image denoising (LIR): train from unpaired noisy and clean folders, restore folders of images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    **APP_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"invrep {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """invrep: learn a denoiser from unpaired noisy and clean images, then restore folders with it."""


app.command("train", help=train.__doc__, cls=HelpCommand)(train.train_command)
app.command("restore", help=restore.__doc__, cls=HelpCommand)(restore.restore_command)
app.command("export", help=export.__doc__, cls=HelpCommand)(export.export_command)
app.command("bench", help=bench.__doc__, cls=HelpCommand)(bench.bench_command)
app.command("demo", help=demo.demo_command.__doc__, cls=HelpCommand)(demo.demo_command)
app.add_typer(weights.app, name="weights")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console_err.print("[red]interrupted[/red]")
        raise SystemExit(130) from None


__all__ = ["app", "main"]
