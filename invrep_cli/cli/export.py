"""Export the restorer to ONNX and check it against PyTorch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from invrep_cli.cli.common import (
    JsonOpt,
    NoColorOpt,
    QuietOpt,
    ThreadsOpt,
    WeightsOpt,
    console,
    console_err,
    core_errors,
    plain_output,
    plain_table,
    print_json,
)


def _print_parity(report: dict[str, Any], out: Any, plain: bool) -> None:
    """The parity table on ``out`` (stdout when it passed, stderr with the error when it did not);
    plain columns when piped or --no-color."""
    from rich.markup import escape
    from rich.table import Table

    title = f"ONNX vs PyTorch ({report['provider']}, tolerance {report['tolerance']:g})"
    rows = [
        [" x ".join(map(str, check["size"])),
         "non-finite" if math.isinf(check["max_abs_diff"]) else f"{check['max_abs_diff']:.3g}",
         "pass" if check["ok"] else "FAIL"]
        for check in report["checks"]
    ]
    columns = [("input N x C x H x W", "left"), ("max |ONNX - PyTorch|", "right"), ("result", "left")]
    if plain:
        out.print(title, highlight=False, markup=False)
        out.print(plain_table(columns, [(None, cells, None) for cells in rows]), highlight=False, markup=False)
        return
    table = Table(title=escape(title))
    for name, justify in columns:
        table.add_column(escape(name), justify=justify)  # type: ignore[arg-type]
    for size, diff, result in rows:
        table.add_row(size, diff, "[green]pass[/green]" if result == "pass" else "[red]FAIL[/red]")
    out.print(table)


def _int8_line(report: dict[str, Any]) -> str:
    parity, calibration = report["int8_parity"], report["quantization"]["calibration"]
    return (
        f"int8 vs fp32 graph: {parity['psnr_db']:.2f} dB PSNR (worst crop {parity['min_psnr_db']:.2f}, "
        f"required {parity['min_psnr_required']:g}) on {parity['inputs']} held-out crops; calibrated on "
        f"{calibration['crops_used']} crops of {calibration['folder']} ({calibration['files']} files)"
    )


def export_command(
    onnx: Annotated[Path, typer.Option("--onnx", "-o", help="Output .onnx file (kept only if the check passes).")],
    opset: Annotated[
        int, typer.Option("--opset", help="ONNX opset. <18 uses the TorchScript exporter, >=18 the dynamo exporter.")
    ] = 17,
    weights: WeightsOpt = None,
    fp16: Annotated[
        bool,
        typer.Option("--fp16", help="fp16 weights and compute (float32 input/output via Cast nodes); for GPUs."),
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option("--tolerance", min=0.0, help="Largest allowed |ONNX - PyTorch| (default 1e-4, fp16 1e-2)."),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option("--int8", help="Static int8 (QDQ, per-channel weights) for CPUs; needs --calibrate."),
    ] = False,
    calibrate: Annotated[
        Path | None,
        typer.Option("--calibrate", help="Folder of images (clean or noisy) whose random crops set the int8 ranges."),
    ] = None,
    calibration_crops: Annotated[int, typer.Option("--calibration-crops", min=1, help="Crops to calibrate on.")] = 64,
    calibration_size: Annotated[int, typer.Option("--calibration-size", min=8, help="Crop side in px.")] = 128,
    calibration_sigma: Annotated[
        float,
        typer.Option("--calibration-sigma", min=0.0, help="Gaussian noise (0-255) added to crops; 0 for noisy images."),
    ] = 0.0,
    min_psnr: Annotated[
        float, typer.Option("--min-psnr", help="Smallest int8 PSNR against the fp32 graph that keeps the file.")
    ] = 35.0,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    no_color: NoColorOpt = False,
) -> None:
    """Export the restorer to ONNX (dynamic batch, height, width; metadata embedded) and check it against PyTorch
    at three sizes, odd ones included. Exit 0 when it matches, 1 when it does not (no file kept), 2 on bad
    weights or options."""
    from invrep_cli.errors import ExportError, UsageError
    from invrep_cli.export import export_onnx
    from invrep_cli.quantize import Calibration
    from invrep_cli.weights import resolve_weights

    talk = not (quiet or json_out)
    plain = plain_output(no_color)
    with core_errors():
        if int8 != (calibrate is not None):
            raise UsageError("--int8 and --calibrate DIR go together: int8 ranges are calibrated on images")
        calibration = (
            Calibration(str(calibrate), calibration_crops, calibration_size, calibration_sigma)
            if calibrate is not None else None
        )
        path = resolve_weights(weights)
        try:
            report = export_onnx(
                path, onnx, opset=opset, fp16=fp16, tol=tolerance, calibration=calibration, min_psnr=min_psnr,
                threads=threads, progress=(lambda msg: console_err.print(f"[dim]{msg}[/dim]")) if talk else None,
            )
        except ExportError as exc:
            # a parity failure still shows its numbers: they are what the user needs to judge it
            failed = getattr(exc, "report", None)
            if failed is not None and json_out:
                print_json({**failed, "error": str(exc)})
            elif failed is not None and not quiet:  # with the error, on stderr
                _print_parity(failed, console_err, plain)
                if "int8_parity" in failed:
                    console_err.print(_int8_line(failed), highlight=False, soft_wrap=True, markup=False)
            raise
    if json_out:
        print_json(report)
        return
    if quiet:
        return
    _print_parity(report, console, plain)
    if report["parity_skipped"]:
        console_err.print(f"parity check skipped: {report['parity_skipped']}", highlight=False, markup=False)
    if "int8_parity" in report:
        console.print(_int8_line(report), highlight=False, soft_wrap=True)
    worst = max((c["max_abs_diff"] for c in report["checks"]), default=float("nan"))
    console.print(
        f"wrote [bold]{report['path']}[/bold] ({report['file_size'] / 1e6:.1f} MB, opset {report['opset']}, "
        f"{report['exporter']} exporter, {report['precision']}); largest fp32 difference {worst:.3g}; "
        f"{report['seconds']:.1f} s",
        highlight=False,
    )
