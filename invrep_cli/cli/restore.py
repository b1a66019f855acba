"""Restore images (a file, a folder or a glob) with trained weights, in tiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from invrep_cli.cli.common import (
    DeviceOpt,
    JsonOpt,
    NoColorOpt,
    QuietOpt,
    ThreadsOpt,
    WeightsOpt,
    console,
    console_err,
    core_errors,
    plain_output,
    print_json,
)

if TYPE_CHECKING:
    from invrep_cli.restore import ProgressEvent, RestoreConfig, RestorePlan, RestoreSummary


def restore_command(
    input_spec: Annotated[
        str, typer.Argument(metavar="IN", help="An image, a folder (recursive) or a glob ('**/*.png').")
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Output folder (sub-folders kept); an image name when IN is one file.")
    ],
    weights: WeightsOpt = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="torch | onnx. Default: onnx for an .onnx file, else torch."),
    ] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (CUDA: bf16/fp16; CPU: bf16 for 8-bit outputs where the CPU has bf16 instructions, "
            "else fp32) | fp32 | fp16 (CUDA) | bf16 (CUDA; CPUs with AVX512-BF16 or AMX) | int8 (an ONNX graph "
            "from export --int8).",
        ),
    ] = "auto",
    tile: Annotated[
        int | None,
        typer.Option("--tile", metavar="PX", help="Tile size in px; 0 = whole image; default: from free memory."),
    ] = None,
    tile_overlap: Annotated[
        int, typer.Option("--tile-overlap", metavar="PX", help="Px over which neighbouring tiles blend.")
    ] = 16,
    strength: Annotated[
        float,
        typer.Option(
            "--strength", metavar="S",
            help="0 = the input unchanged, 1 = the model as trained, up to 4 = stronger: the model's correction "
            "scaled by S (input + S x (restored - input)), clipped.",
        ),
    ] = 1.0,
    self_ensemble: Annotated[
        int,
        typer.Option(
            "--self-ensemble", metavar="N",
            help="Average the model over N flips and quarter turns of each tile (1 = off, 2, 4, 8): with 8 "
            "about +0.2 dB and a clean photo changed less, for 8x the time; 2 and 4 give about two thirds "
            "and nine tenths of that gain.",
        ),
    ] = 1,
    fmt: Annotated[str, typer.Option("--format", help="keep | png | jpg | tif | webp.")] = "keep",
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip outputs whose record matches input, weights and settings (the default; accepted for clarity).",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Re-process every file, even up-to-date ones.")
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="K/N (0-based): take files K, K+N, ... Default: torchrun's RANK/WORLD_SIZE."),
    ] = None,
    threads: ThreadsOpt = None,
    compile_model: Annotated[
        bool,
        typer.Option("--compile", help="torch.compile the restorer for the tile shape (CUDA graphs on GPU)."),
    ] = False,
    max_megapixels: Annotated[
        float | None,
        typer.Option(
            "--max-megapixels", metavar="MP",
            help="Refuse images larger than this (decompression bombs); default 200. Memory grows with it.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
) -> None:
    """Restore IN into OUT. Re-running the same command resumes: outputs whose record (input sha256,
    weights sha256, settings) matches are skipped; changed or missing ones are redone."""
    from invrep_cli.errors import UsageError
    from invrep_cli.inputs import parse_shard
    from invrep_cli.restore import RestoreConfig

    with core_errors():
        if skip_existing and overwrite:
            raise UsageError("--skip-existing and --overwrite contradict each other")
        if max_megapixels is not None and not max_megapixels > 0:
            raise UsageError(f"--max-megapixels {max_megapixels:g}: must be positive")
        config = RestoreConfig(
            input=input_spec, out=str(out), weights=weights, backend=backend, device=device, precision=precision,
            tile=tile, tile_overlap=tile_overlap, fmt=fmt, overwrite=overwrite,
            shard=parse_shard(shard) if shard else None, threads=threads, compile=compile_model,
            max_pixels=None if max_megapixels is None else round(max_megapixels * 1e6), strength=strength,
            self_ensemble=self_ensemble,
        )
        summary = run_and_report(config, json_out=json_out, quiet=quiet, plain=plain_output(no_color))
    if summary.interrupted:
        raise typer.Exit(130)
    raise typer.Exit(1 if summary.failed else 0)


def continue_command(config: RestoreConfig) -> str:
    """The command that continues an interrupted run: the same IN, OUT and settings (a re-run skips
    what is recorded as done), without --overwrite, which would redo what was just written."""
    import shlex

    from invrep_cli.restore import RestoreConfig

    default = RestoreConfig()
    args = ["invrep", "restore", str(config.input), str(config.out)]
    options = (
        ("--weights", config.weights, default.weights), ("--backend", config.backend, default.backend),
        ("--device", config.device, default.device), ("--precision", config.precision, default.precision),
        ("--tile", config.tile, default.tile), ("--tile-overlap", config.tile_overlap, default.tile_overlap),
        ("--strength", config.strength, default.strength), ("--format", config.fmt, default.fmt),
        ("--threads", config.threads, default.threads),
        ("--shard", f"{config.shard[0]}/{config.shard[1]}" if config.shard else None, None),
        ("--max-megapixels", None if config.max_pixels is None else f"{config.max_pixels / 1e6:g}", None),
    )
    for flag, value, unset in options:
        if value != unset:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if config.self_ensemble > 1:
        args += ["--self-ensemble", str(config.self_ensemble)]
    if config.compile:
        args.append("--compile")
    return shlex.join(args)


def run_and_report(
    config: RestoreConfig, json_out: bool = False, quiet: bool = False, plain: bool | None = None
) -> RestoreSummary:
    """Plan (printing what will run), run with a progress bar, print the summary: restore and demo.
    ``plain``: a summary without box drawing (default: when stdout is not a terminal)."""
    from invrep_cli.imageio import pixel_limit_text
    from invrep_cli.restore import plan_restore, run_restore

    talk = not (quiet or json_out)
    plain = plain_output() if plain is None else plain

    def message(text: str) -> None:
        if not quiet or text.startswith("failed"):
            console_err.print(f"[yellow]{text}[/yellow]", highlight=False, soft_wrap=True)

    plan = plan_restore(config, on_warning=message)
    assert plan.work is not None
    if talk:
        backend = plan.backend
        shard = f"  (shard {plan.shard[0]}/{plan.shard[1]})" if plan.shard else ""
        console.print(
            f"[bold]restore[/bold] {len(plan.work.jobs)} file(s) -> {plan.work.record_dir}{shard}",
            highlight=False, soft_wrap=True,
        )
        weights_name = plan.weights_path.name if plan.weights_path else "-"
        console.print(
            f"device [cyan]{backend.device}[/cyan]  backend [cyan]{backend.name}[/cyan]  "
            f"precision [cyan]{backend.precision_policy}[/cyan]",
            highlight=False, soft_wrap=True,
        )
        console.print(f"weights {weights_name}", highlight=False, soft_wrap=True, markup=False)
        # the reason (free memory, KiB per pixel) is in --json; this line fits 80 columns
        console.print(
            f"tiles: {plan.tile.describe_short(backend.context_margin, config.tile_overlap)}; "
            f"images up to {pixel_limit_text(config.max_pixels)}",
            highlight=False, soft_wrap=True,
        )
        if config.strength != 1.0:
            console.print(f"strength {config.strength:g} (the model's correction scaled by it)", highlight=False)
        if config.self_ensemble > 1:
            console.print(
                f"self-ensemble: each tile restored in {config.self_ensemble} orientations and averaged",
                highlight=False,
            )
        # a progress bar only where it can redraw: piped, it would print one bar of box drawing
        summary = _with_progress(plan) if console.is_terminal else run_restore(plan, None, message)
    else:
        summary = run_restore(plan, None, message)
    if json_out:
        print_json(summary.to_dict())
    elif not quiet:
        _print_summary(summary, plain)
    if summary.interrupted:
        # on stderr like every other message, so it reaches the user even when stdout is --json
        console_err.print(
            f"interrupted: {summary.processed} written, {summary.skipped} already up to date, "
            f"{len(summary.failed)} failed, {summary.not_done} not written; to continue, run:",
            highlight=False, soft_wrap=True,
        )
        console_err.print(f"  {continue_command(config)}", highlight=False, soft_wrap=True, markup=False)
    return summary


def _with_progress(plan: RestorePlan) -> RestoreSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from invrep_cli.restore import run_restore

    assert plan.work is not None
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("restoring", total=len(plan.work.jobs), rate="", eta="-")

        def on_progress(event: ProgressEvent) -> None:
            eta = "-" if event.eta_s is None else f"{int(event.eta_s // 60)}:{int(event.eta_s % 60):02d}"
            progress.update(task, completed=event.done, rate=f"{event.mp_per_s:.2f} MP/s", eta=eta)

        def progress_message(text: str) -> None:
            progress.console.print(f"[yellow]{text}[/yellow]", highlight=False, soft_wrap=True)

        plan.backend.on_warning = progress_message
        return run_restore(plan, on_progress, progress_message)


def _print_summary(summary: RestoreSummary, plain: bool = False) -> None:
    from collections import Counter

    rows = [
        ("processed", str(summary.processed)),
        ("skipped (up to date)", str(summary.skipped)),
        ("failed", str(len(summary.failed))),
        ("ignored (not images, hidden...)", str(len(summary.ignored))),
        ("megapixels", f"{summary.megapixels:.2f}"),
        ("time", f"{summary.seconds:.1f} s ({summary.mp_per_s:.2f} MP/s)"),
        ("device", summary.device),
        ("backend / precision", f"{summary.backend} / {summary.precision}"),
        ("tile", f"{summary.tile.get('final_tile')} (overlap {summary.tile.get('overlap')}, "
                 f"context {summary.tile.get('margin')})"),
    ]
    if summary.strength != 1.0:
        rows.append(("strength", f"{summary.strength:g}"))
    if summary.self_ensemble > 1:
        rows.append(("self-ensemble", f"{summary.self_ensemble} orientations averaged"))
    if summary.interrupted:
        rows.insert(3, ("not written (interrupted)", str(summary.not_done)))
    if plain:
        # pipes, logs and --no-color: "key: value" lines, nothing to draw
        width = max(len(key) for key, _ in rows)
        console.print("restore summary", highlight=False)
        for key, value in rows:
            console.print(f"  {key + ':':<{width + 1}} {value}", highlight=False, soft_wrap=True, markup=False)
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="restore summary", show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        for key, value in rows:
            shown = escape(value)
            table.add_row(key, f"[red]{shown}[/red]" if key == "failed" and summary.failed else shown)
        console.print(table)
    if summary.ignored:
        reasons = Counter(item["reason"] for item in summary.ignored)
        console.print("ignored: " + "; ".join(f"{n} {reason}" for reason, n in reasons.most_common()),
                      highlight=False, soft_wrap=True, markup=False)
    for note in summary.notes[:20]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    if len(summary.notes) > 20:
        console.print(f"... and {len(summary.notes) - 20} more notes (see --json)")
    if summary.failed:
        from rich.markup import escape

        where = f" (listed in {escape(summary.failures_file)})" if summary.failures_file else ""
        console_err.print(f"[red]{len(summary.failed)} file(s) failed[/red]{where}:", highlight=False, soft_wrap=True)
        for failure in summary.failed:
            console_err.print(
                f"  {failure['path']}: {failure['reason']}", highlight=False, soft_wrap=True, markup=False
            )
