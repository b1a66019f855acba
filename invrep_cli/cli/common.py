"""Shared option aliases, help settings, and the one place where core errors become messages and
exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from invrep_cli.errors import InvrepError

console = Console()
console_err = Console(stderr=True)

DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto | cuda | cuda:N | cpu. 'cuda' without a GPU is an error.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, metavar="N", help="CPU threads for torch and ONNX Runtime; default: every core."),
]
NoColorOpt = Annotated[
    bool, typer.Option("--no-color", help="No colour, and a plain summary instead of a drawn table (as when piped).")
]
WeightsOpt = Annotated[
    str | None,
    typer.Option("--weights", "-w", help="Weights: a registry name, a .safetensors/.pt/.onnx path, or a URL."),
]


def plain_output(no_color: bool = False) -> bool:
    """Whether tables should be plain text: ``--no-color``, $NO_COLOR, or stdout not a terminal.
    With ``no_color`` both consoles stop colouring too."""
    if no_color:
        console.no_color = console_err.no_color = True
    return no_color or bool(os.environ.get("NO_COLOR")) or not console.is_terminal


# --------------------------------------------------------------------------- help
# Typer's help shows each option's type as <str>, <bool>, <int range> [x>=1]; drawn in Rich boxes it
# pads every line with spaces and keeps the docstrings' line breaks mid-sentence. invrep's help is
# click's plain layout instead (paragraphs re-wrapped to the terminal, at most 80 columns, nothing
# drawn) with a short metavar per value (N, X, PATH, TEXT, or the option's own) and none for flags.

_METAVARS = {int: "N", float: "X", str: "TEXT", Path: "PATH"}


def _metavar(param: TyperOption | TyperArgument) -> str:
    annotation = param.type_descriptor.annotation
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Path):
        annotation = Path
    return _METAVARS.get(annotation, "VALUE") if isinstance(annotation, type) else "VALUE"


class _HelpOption(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        return None if self.is_flag else _metavar(self) + ("..." if self.nargs != 1 else "")

    def _get_number_range_help_str(self) -> str | None:
        return None  # the range is checked when parsing and said in the help text where it matters


class _HelpArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the argument's name (IN, OUT) already stands for its value


def _plain_params(command: Any) -> None:
    for param in command.params:
        if type(param) is TyperOption:
            param.__class__ = _HelpOption
        elif type(param) is TyperArgument:
            param.__class__ = _HelpArgument


def _one_paragraph(text: str | None) -> str | None:
    """A docstring's paragraphs with their line breaks removed (click re-wraps them)."""
    if not text:
        return text
    import inspect

    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _first_sentence(text: str) -> str:
    """What the Commands list shows: the first sentence whole (click would cut it to "...")."""
    paragraph = text.split("\n\n")[0]
    return paragraph.split(". ")[0].rstrip(".") + "."


class HelpCommand(TyperCommand):
    """A command with invrep's plain help (see above); behaviour is Typer's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        kwargs["help"] = _one_paragraph(kwargs.get("help"))
        super().__init__(*args, **kwargs)
        _plain_params(self)
        if self.help and not self.short_help:
            self.short_help = _first_sentence(self.help)

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or super().get_short_help_str(limit)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments, then options in the panels the command gave them (``rich_help_panel``:
        train's Data, Model, Loss weights), each a plain section."""
        arguments: list[tuple[str, str]] = []
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                sections.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(record)
        for name, rows in (("Arguments", arguments), *sections.items()):
            if rows:
                with formatter.section(name):
                    formatter.write_dl(rows)


class HelpGroup(TyperGroup):
    """A command group with invrep's plain help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["rich_markup_mode"] = None
        kwargs["help"] = _one_paragraph(kwargs.get("help"))
        super().__init__(*args, **kwargs)
        _plain_params(self)

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or _first_sentence(self.help or "")


#: Typer(...) settings every invrep command group shares
APP_SETTINGS: dict[str, Any] = {
    "cls": HelpGroup,
    "context_settings": {"help_option_names": ["-h", "--help"], "max_content_width": 80},
    "rich_markup_mode": None,
}


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
