"""Restore images (a file, a folder or a glob) with trained weights, in tiles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from invrep_cli.cli.common import (
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    WeightsOpt,
    console,
    console_err,
    core_errors,
    print_json,
)

if TYPE_CHECKING:
    from invrep_cli.backends import Backend
    from invrep_cli.restore import FileJob, ProgressEvent, RestoreOptions, RestoreSummary, TileChoice


def restore_command(
    input_spec: Annotated[
        str, typer.Argument(metavar="IN", help="An image, a folder (recursive) or a glob ('**/*.png').")
    ],
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Output folder (sub-folders kept); an image name when IN is one file.")
    ],
    weights: WeightsOpt = None,
    backend: Annotated[str, typer.Option("--backend", help="torch | onnx.")] = "torch",
    device: DeviceOpt = "auto",
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | fp16 (CUDA) | bf16 (CUDA; CPUs with AVX512-BF16 "
            "or AMX) | int8 (an ONNX graph from export --int8).",
        ),
    ] = "auto",
    tile: Annotated[
        int | None, typer.Option("--tile", help="Tile size in px; 0 = whole image; default: from free memory.")
    ] = None,
    tile_overlap: Annotated[int, typer.Option("--tile-overlap", help="Px over which neighbouring tiles blend.")] = 16,
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
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="CPU threads for inference (torch, ONNX Runtime); default: every core."),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option("--compile", help="torch.compile the restorer for the tile shape (CUDA graphs on GPU)."),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore IN into OUT. Re-running the same command resumes: outputs whose record (input sha256,
    weights sha256, settings) matches are skipped; changed or missing ones are redone."""
    from invrep_cli.errors import UsageError

    with core_errors():
        if skip_existing and overwrite:
            raise UsageError("--skip-existing and --overwrite contradict each other")
        if tile is not None and tile < 0:
            raise UsageError(f"--tile {tile}: must be >= 0 (0 = whole image)")
        if tile_overlap < 0:
            raise UsageError(f"--tile-overlap {tile_overlap}: must be >= 0")
        summary = _run(
            input_spec, out, weights, backend, device, precision, tile, tile_overlap, fmt, overwrite, shard, threads,
            json_out, quiet, compile_model,
        )
    raise typer.Exit(1 if summary.failed else 0)


def _run(
    input_spec: str, out: Path, weights: str | None, backend_name: str, device: str, precision: str,
    tile: int | None, tile_overlap: int, fmt: str, overwrite: bool, shard_text: str | None, threads: int | None,
    json_out: bool, quiet: bool, compile_model: bool = False,
) -> RestoreSummary:
    from invrep_cli.backends import make_backend
    from invrep_cli.fsutil import sha256_file
    from invrep_cli.restore import (
        RestoreOptions,
        choose_tile,
        device_for_rank,
        parse_shard,
        plan_jobs,
        restore_files,
        shard_from_env,
    )
    from invrep_cli.weights import resolve_weights

    shard = parse_shard(shard_text) if shard_text else shard_from_env()
    options = RestoreOptions(tile=tile, tile_overlap=tile_overlap, fmt=fmt, overwrite=overwrite, shard=shard)
    planned = plan_jobs(input_spec, out, fmt)  # path errors (exit 2) before the weights load
    weights_path = resolve_weights(weights)
    backend = make_backend(weights_path, backend_name, device_for_rank(device), precision, threads, compile_model)
    talk = not (quiet or json_out)

    def message(text: str) -> None:
        if not quiet or text.startswith("failed"):
            console_err.print(f"[yellow]{text}[/yellow]", highlight=False, soft_wrap=True)

    if hasattr(backend, "on_warning"):
        backend.on_warning = message
    meta = getattr(backend, "meta", {}) or {}
    weights_sha256 = str(meta.get("sha256") or sha256_file(weights_path))
    choice = choose_tile(backend, tile_overlap, tile)
    jobs = planned[0][shard[0] :: shard[1]] if shard else planned[0]
    if talk:
        console.print(
            f"[bold]restore[/bold] {len(jobs)} file(s) -> {planned[1]}"
            + (f"  (shard {shard[0]}/{shard[1]})" if shard else ""),
            highlight=False,
        )
        console.print(
            f"device [cyan]{backend.device}[/cyan]  backend [cyan]{backend.name}[/cyan]  "
            f"precision [cyan]{backend.precision}[/cyan]  weights {weights_path.name}",
            highlight=False,
        )
        console.print(f"tiles: {choice.describe(backend.context_margin, tile_overlap)}", highlight=False)

    if talk:
        summary = _with_progress(input_spec, out, backend, weights_sha256, options, choice, planned, len(jobs))
    else:
        summary = restore_files(input_spec, out, backend, weights_sha256, options, None, message, choice, planned)
    result = summary.to_dict() | {"weights": str(weights_path), "weights_sha256": weights_sha256}
    if json_out:
        print_json(result)
    elif not quiet:
        _print_summary(summary)
    return summary


def _with_progress(
    input_spec: str, out: Path, backend: Backend, weights_sha256: str, options: RestoreOptions,
    choice: TileChoice, planned: tuple[list[FileJob], Path, list[dict[str, str]], int], total: int,
) -> RestoreSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from invrep_cli.restore import restore_files

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("restoring", total=total, rate="", eta="-")

        def on_progress(event: ProgressEvent) -> None:
            eta = "-" if event.eta_s is None else f"{int(event.eta_s // 60)}:{int(event.eta_s % 60):02d}"
            progress.update(task, completed=event.done, rate=f"{event.mp_per_s:.2f} MP/s", eta=eta)

        def progress_message(text: str) -> None:
            progress.console.print(f"[yellow]{text}[/yellow]", highlight=False, soft_wrap=True)

        return restore_files(
            input_spec, out, backend, weights_sha256, options, on_progress, progress_message, choice, planned
        )


def _print_summary(summary: RestoreSummary) -> None:
    from rich.table import Table

    table = Table(title="restore summary", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("processed", str(summary.processed)),
        ("skipped (up to date)", str(summary.skipped)),
        ("failed", f"[red]{len(summary.failed)}[/red]" if summary.failed else "0"),
        ("ignored (not images)", str(summary.ignored)),
        ("megapixels", f"{summary.megapixels:.2f}"),
        ("time", f"{summary.seconds:.1f} s ({summary.mp_per_s:.2f} MP/s)"),
        ("device", summary.device),
        ("backend / precision", f"{summary.backend} / {summary.precision}"),
        ("tile", f"{summary.tile.get('final_tile')} (overlap {summary.tile.get('overlap')}, "
                 f"context {summary.tile.get('margin')})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for note in summary.notes[:20]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if len(summary.notes) > 20:
        console.print(f"... and {len(summary.notes) - 20} more notes (see --json)")
    if summary.failed:
        console_err.print(
            f"[red]{len(summary.failed)} file(s) failed[/red] (listed in {summary.out}/.invrep-failures*.txt):"
        )
        for failure in summary.failed:
            console_err.print(f"  {failure['path']}: {failure['reason']}", highlight=False, soft_wrap=True)
