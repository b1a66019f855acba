"""Benchmark speed, memory and quality across backends, precisions and baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from invrep_cli.cli.common import (
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    ThreadsOpt,
    console,
    console_err,
    core_errors,
    plain_table,
    print_json,
)
from invrep_cli.errors import UsageError

if TYPE_CHECKING:
    from invrep_cli.bench import BenchResult, BenchRow


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _sigmas(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _split(value))
    except ValueError:
        raise UsageError(f"--sigma {value!r}: give numbers separated by commas, e.g. 15,25,50") from None


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_COLUMNS = (
    ("sigma", "right"), ("method", "left"), ("weights", "left"), ("backend", "left"), ("device", "left"),
    ("precision", "left"), ("tile", "right"), ("MP/s", "right"), ("peak MB", "right"), ("PSNR", "right"),
    ("SSIM", "right"), ("note", "left"),
)


def _level(row: BenchRow) -> str:
    """Pairs mode's first cell: the mean level a classical row was given, and which kind."""
    if row.noise_level is None:
        return "-"
    bound = ", upper bound" if row.upper_bound else ""
    return f"{row.detail.get('sigma_mean', 0.0):.2f} {row.noise_level}{bound}"


def _cells(result: BenchResult) -> tuple[list[tuple[str, str]], list[tuple[object, list[str], str | None]]]:
    """Columns (name, justify) and rows (group, plain-text cells, "skipped" | "failed" | None); a new
    group (a sigma; in pairs mode, the upper bounds) starts a new section."""
    with_notes = any(r.skipped or r.failed for r in result.rows)
    pairs = bool(result.config.get("pairs"))
    columns = list(_COLUMNS[: None if with_notes else -1])
    if pairs:
        columns[0] = ("sigma given", "left")
    rows = []
    for row in result.rows:
        weights = f"{row.weights} {row.weights_sha256}" if row.weights else "-"
        cells = [
            _level(row) if pairs else f"{row.sigma:g}", row.method, weights, row.backend, row.device, row.precision,
            "-" if row.tile is None else "whole" if row.tile == 0 else str(row.tile), _fmt(row.mp_per_s, 3),
            _fmt(row.peak_memory_mb, 0), _fmt(row.psnr, 2), _fmt(row.ssim, 4),
        ]
        if with_notes:
            cells.append(row.skipped and f"skipped: {row.skipped}" or row.failed and f"failed: {row.failed}" or "")
        group = row.upper_bound if pairs else row.sigma
        rows.append((group, cells, "skipped" if row.skipped else "failed" if row.failed else None))
    return columns, rows


def _render(result: BenchResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    m = result.machine
    kind = "pairs" if result.config.get("pairs") else "images"
    title = f"invrep bench: {len(result.images)} {kind}, " + ", ".join(
        f"{i['name']} {i['width']}x{i['height']}" for i in result.images[:6]
    )
    columns, rows = _cells(result)
    if not console.is_terminal:
        # piped or redirected: no width to fit, so every cell whole (a Rich table would cut to 80 columns)
        print(title)
        print(plain_table(columns, rows))
    else:
        # a narrow terminal folds long cells onto more lines instead of cutting them with an ellipsis
        table = Table(title=title, title_justify="left")
        for col, justify in columns:
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
        previous = None
        for group, cells, status in rows:
            if previous is not None and group != previous:
                table.add_section()
            previous = group
            # reasons quote paths and pip extras like invrep[bm3d]: not Rich markup
            text = [escape(c) for c in cells]
            if status == "failed":
                text[-1] = f"[red]{text[-1]}[/red]"
            table.add_row(*text, style="dim" if status == "skipped" else None)
        console.print(table)
    cuda = m.get("cuda") or "no CUDA"
    console.print(
        f"machine: {m.get('processor')}, {m.get('cpu_count')} CPUs, torch {m.get('torch')} "
        f"({m.get('torch_threads')} threads), {cuda}, onnxruntime {m.get('onnxruntime')}",
        highlight=False,
    )
    methods = sorted({r.memory_method for r in result.rows if r.memory_method})
    if methods:
        console.print("peak memory: " + "; ".join(methods), highlight=False)
    for note in result.notes:
        console.print(note, highlight=False, soft_wrap=True)


def bench_command(
    clean_dir: Annotated[
        Path | None,
        typer.Argument(help="Folder of clean images (with --pairs: of noisy/reference pairs). "
                       "Default: scikit-image's sample photos (offline)."),
    ] = None,
    sigma: Annotated[
        str | None, typer.Option("--sigma", help="Gaussian noise levels (0-255), comma list; default 15,25,50. "
                                                 "0: the clean images as they are.")
    ] = None,
    pairs: Annotated[
        bool,
        typer.Option("--pairs", help="Score real noisy/reference pairs from the folder instead of adding noise; "
                     "NLM and BM3D get each image's estimated level, and the oracle level as an upper bound."),
    ] = False,
    noisy_pattern: Annotated[
        str | None,
        typer.Option("--noisy-pattern", help="With --pairs: noisy files, relative to the folder, one '*' naming "
                     "the pair; default *_real.png (CC15)."),
    ] = None,
    ref_pattern: Annotated[
        str | None,
        typer.Option("--ref-pattern", help="With --pairs: reference files, one '*' naming the pair. "
                     "Default *_mean.png (CC15)."),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option("--weights", "-w", help="Weights to compare (repeatable or comma list); default: bundled."),
    ] = None,
    backends: Annotated[str, typer.Option("--backends", help="Comma list: torch, onnx ('' none).")] = "torch,onnx",
    precisions: Annotated[
        str,
        typer.Option(
            "--precisions",
            help="auto (CPU: fp32, bf16 where supported, int8 for onnx; CUDA: fp32, fp16, bf16) or a comma list.",
        ),
    ] = "auto",
    device: DeviceOpt = "auto",
    tile: Annotated[int | None, typer.Option("--tile", help="Tile size; default: chosen by restore.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use at most N images.")] = None,
    gray: Annotated[bool, typer.Option("--gray", help="Convert every image to gray (Set12-style).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the added noise.")] = 0,
    baselines: Annotated[
        str, typer.Option("--baselines", help="Comma list of noisy, nlm, bm3d (bm3d is slow; needs invrep\\[bm3d]).")
    ] = "noisy,nlm",
    save_dir: Annotated[
        Path | None, typer.Option("--save-dir", help="Keep clean, noisy and restored images here as PNG.")
    ] = None,
    in_process: Annotated[
        bool,
        typer.Option("--in-process", help="Run rows in this process (faster; peak memory less isolated)."),
    ] = False,
    threads: ThreadsOpt = None,
    strength: Annotated[
        float,
        typer.Option("--strength", metavar="S", help="Network rows restore at restore's --strength S (default 1)."),
    ] = 1.0,
    self_ensemble: Annotated[
        int,
        typer.Option(
            "--self-ensemble", metavar="N",
            help="Network rows restore as restore --self-ensemble N does (1 = off, 2, 4, 8; N x the time).",
        ),
    ] = 1,
    calibrate: Annotated[
        Path | None,
        typer.Option("--calibrate", help="Clean images (noised at the middle sigma) calibrating int8 rows; "
                     "default: two scikit-image photos that are not bench images."),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    from invrep_cli.bench import BenchConfig, run_bench

    with core_errors():
        specs: list[str | None] = [w for item in (weights or []) for w in _split(item)] or [None]
        if pairs and sigma is not None:
            raise UsageError("--sigma adds noise to clean images; with --pairs the noise is in the files")
        if not pairs and (noisy_pattern or ref_pattern):
            raise UsageError("--noisy-pattern and --ref-pattern go with --pairs")
        patterns = {k: v for k, v in (("noisy_pattern", noisy_pattern), ("ref_pattern", ref_pattern)) if v}
        config = BenchConfig(
            clean_dir=str(clean_dir) if clean_dir is not None else None,
            sigmas=_sigmas(sigma or "15,25,50"),
            pairs=pairs,
            **patterns,
            weights=tuple(specs),
            backends=tuple(_split(backends)),
            precisions=tuple(_split(precisions)) or ("auto",),
            device=device,
            tile=tile,
            limit=limit,
            gray=gray,
            seed=seed,
            baselines=tuple(_split(baselines)),
            save_dir=str(save_dir) if save_dir is not None else None,
            isolate=not in_process,
            threads=threads,
            strength=strength,
            self_ensemble=self_ensemble,
            calibrate=str(calibrate) if calibrate is not None else None,
        )

        def log(msg: str) -> None:
            if not quiet and not json_out:
                console_err.print(f"[dim]{msg}[/dim]", highlight=False)

        result = run_bench(config, log=log)
    if json_out:
        print_json(result.to_dict())
    elif not quiet:
        _render(result)
    if result.any_failed:
        raise typer.Exit(1)
