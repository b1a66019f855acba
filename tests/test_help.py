"""Every command's -h at COLUMNS=80 (issue 18): at most 80 columns, no trailing spaces, no Typer type
markers (<bool>, <str>, <int range> ...), nothing drawn, descriptions whole and not broken mid-line."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from invrep_cli.cli import app

MARKER = re.compile(r"<(bool|str|int|float|path|file|list\[[^\]]*\])( range)?>|\[x[<>]=")
BOX_DRAWING = set("─━│┃┌┐└┘├┤┬┴┼╭╮╯╰═║╔╗╚╝┏┓┗┛")
#: click wraps help to the terminal width less 2 columns
TEXT_WIDTH = 78


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in sorted(group.commands.items()):  # type: ignore[attr-defined]
        if hasattr(command, "commands"):  # a group (typer carries its own click)
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def test_every_command_is_checked() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"", "train", "restore", "export", "bench", "demo", "weights", "weights list", "weights download"} <= names


def _broken_lines(lines: list[str]) -> list[str]:
    """Lines that end although the next line's first word would have fitted: a hard line break
    inside a sentence (a docstring's own newlines), not wrapping. Checked on help-column
    continuation lines (indented more than 2) and on the description paragraphs."""
    broken = []
    for a, b in zip(lines, lines[1:], strict=False):
        if not a.startswith(" ") or not b.startswith(" "):  # blank lines, section headers
            continue
        # a new row of a definition list: "  NAME  text" or "  --option X  text", at indent 2
        new_row = re.match(r"  (-|\S+( \S+)*? {2,}\S)", b) is not None
        # a row whose name is too long for the column has its text on the next line
        name_alone = re.match(r"  -", a) is not None and re.search(r"\S {2,}\S", a.strip()) is None
        if not new_row and not name_alone and len(a) + 1 + len(b.split()[0]) <= TEXT_WIDTH:
            broken.append(a)
    return broken


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "invrep")
def test_help_fits_80_columns_without_markers(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "-h"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("Usage: invrep")
    assert [line for line in lines if len(line) > 80] == []
    assert [line for line in lines if line != line.rstrip()] == []
    assert [line for line in lines if MARKER.search(line)] == []
    assert not set(result.stdout) & BOX_DRAWING
    assert _broken_lines(lines) == []


def test_command_lists_show_whole_first_sentences() -> None:
    result = CliRunner().invoke(app, ["-h"], env={"COLUMNS": "80"})
    listing = " ".join(result.stdout.split("Commands:")[1].split())
    for name in ("train", "restore", "export", "bench", "weights"):
        command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        first = " ".join((command.help or "").split("\n\n")[0].split(". ")[0].split())
        assert first.rstrip(".") + "." in listing
    assert "..." not in listing
