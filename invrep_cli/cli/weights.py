"""List registered weights and download them into the cache ahead of offline use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from invrep_cli.cli.common import (
    APP_SETTINGS,
    HelpCommand,
    JsonOpt,
    QuietOpt,
    console,
    console_err,
    core_errors,
    plain_table,
    print_json,
)

app = typer.Typer(
    help="List and download registered weights (bundled ones and verified downloads into the cache).",
    no_args_is_help=True,
    **APP_SETTINGS,
)


def _human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _where(row: dict[str, Any]) -> str:
    """Where a listed entry's file is: bundled or cached (usable offline), to download, or missing."""
    if row["cached"]:
        return "bundled" if row["bundled"] else "cached"
    return "download" if row["url"] else "missing"


@app.command("list", cls=HelpCommand)
def list_command(json_out: JsonOpt = False) -> None:
    """List registered weights and what each is for: the default one, size, bundled, present locally."""
    from invrep_cli.weights import cache_dir, list_weights, registry_path

    with core_errors():
        rows = list_weights()
    if json_out:
        print_json({"registry": str(registry_path()), "cache": str(cache_dir()), "weights": rows})
        return
    columns = [("name", "left"), ("default", "left"), ("size", "right"), ("here", "left"), ("what it is for", "left")]
    cells = [[row["name"], "yes" if row["default"] else "-", _human_size(row["size"]), _where(row),
              row["description"] or "-"] for row in rows]
    where = f"registry {registry_path()}\ncache {cache_dir()}"
    if not console.is_terminal:
        # piped: one whole line per model, so `invrep weights list | grep real` finds it
        print(plain_table(columns, [(None, c, None) for c in cells]))
        print(where)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(caption=where, caption_justify="left")
    for name, justify in columns:
        # names stay whole; a narrow terminal folds the description rather than cutting it
        table.add_column(name, justify=justify, no_wrap=name == "name", overflow="fold",  # type: ignore[arg-type]
                         ratio=1 if name == "what it is for" else None)
    for row in cells:
        table.add_row(*(escape(c) for c in row))
    console.print(table)


@contextmanager
def _progress_bar(enabled: bool, label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A Rich byte progress bar on stderr (stdout stays clean for --json); a no-op when disabled.

    The bar appears on the first progress report, so a cached file or an unknown name prints no
    empty bar.
    """
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console_err,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


@app.command("download", cls=HelpCommand)
def download_command(
    name: Annotated[str, typer.Argument(help="A registry name (see `invrep weights list`) or an http(s) URL.")],
    force: Annotated[bool, typer.Option("--force", help="Download again even if a verified copy is cached.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download weights into the cache and verify their sha256, so later runs work offline."""
    from invrep_cli.weights import locate_weights

    with core_errors(), _progress_bar(not (quiet or json_out), name) as update:
        found = locate_weights(name, progress=update, force=force)
    size = found.path.stat().st_size
    if json_out:
        print_json(
            {
                "name": found.name or name,
                "path": str(found.path),
                "source": found.source,
                "size": size,
                "sha256": found.sha256,
                "downloaded": found.downloaded,
            }
        )
    elif not quiet:
        state = "downloaded and verified" if found.downloaded else f"already present ({found.source})"
        console.print(f"{found.name or name}: {state}: {found.path} ({_human_size(size)})", highlight=False)
