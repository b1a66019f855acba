"""Shared option aliases and the one place where core errors become messages and exit codes."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

from invrep_cli.errors import InvrepError

console = Console()
console_err = Console(stderr=True)

DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto | cuda | cuda:N | cpu. 'cuda' without a GPU is an error.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads for torch and ONNX Runtime; default: every core.")
]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", "-w", help="Weights: a registry name, a .safetensors/.pt/.onnx path, or a URL."),
]


@contextlib.contextmanager
def core_errors() -> Iterator[None]:
    """Turn an InvrepError from the core into one red line on stderr and its exit code."""
    try:
        yield
    except InvrepError as exc:
        console_err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, default=str) + "\n")
    sys.stdout.flush()


def plain_table(columns: list[tuple[str, str]], rows: list[tuple[object, list[str], str | None]]) -> str:
    """Space-aligned columns, nothing cut: for pipes and files, where there is no terminal width (a Rich
    table would cut to 80 columns). Rows are (group, cells, status); a blank line parts the groups."""
    widths = [max([len(name)] + [len(cells[i]) for _, cells, _ in rows]) for i, (name, _) in enumerate(columns)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if justify == "right" else c.ljust(w)
                  for c, w, (_, justify) in zip(cells, widths, columns, strict=True)]
        return "  ".join(padded).rstrip()

    out, previous = [line([name for name, _ in columns])], None
    for group, cells, _ in rows:
        if previous is not None and group != previous:
            out.append("")
        previous = group
        out.append(line(cells))
    return "\n".join(out)
