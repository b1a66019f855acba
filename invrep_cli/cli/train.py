"""Train a LIR denoiser from unpaired noisy and clean folders."""

from __future__ import annotations

import typer


def train_command() -> None:
    raise typer.Exit(3)
