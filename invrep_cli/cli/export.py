"""Export the restorer to ONNX and check it against PyTorch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from invrep_cli.cli.common import JsonOpt, QuietOpt, WeightsOpt, console, console_err, core_errors, print_json


def _parity_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"ONNX vs PyTorch ({report['provider']}, tolerance {report['tolerance']:g})")
    table.add_column("input N x C x H x W")
    table.add_column("max |ONNX - PyTorch|", justify="right")
    table.add_column("result")
    for check in report["checks"]:
        diff = check["max_abs_diff"]
        table.add_row(
            " x ".join(map(str, check["size"])),
            "non-finite" if math.isinf(diff) else f"{diff:.3g}",
            "[green]pass[/green]" if check["ok"] else "[red]FAIL[/red]",
        )
    return table


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
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export the restorer to ONNX (dynamic batch, height, width; metadata embedded) and check it against PyTorch
    at three sizes, odd ones included. Exit 0 when it matches, 1 when it does not (no file kept), 2 on bad
    weights or options."""
    from invrep_cli.errors import ExportError
    from invrep_cli.export import export_onnx
    from invrep_cli.weights import resolve_weights

    talk = not (quiet or json_out)
    with core_errors():
        path = resolve_weights(weights)
        try:
            report = export_onnx(
                path, onnx, opset=opset, fp16=fp16, tol=tolerance,
                progress=(lambda msg: console_err.print(f"[dim]{msg}[/dim]")) if talk else None,
            )
        except ExportError as exc:
            # a parity failure still shows its numbers: they are what the user needs to judge it
            failed = getattr(exc, "report", None)
            if failed is not None and json_out:
                print_json({**failed, "error": str(exc)})
            elif failed is not None and not quiet:
                console.print(_parity_table(failed))
            raise
    if json_out:
        print_json(report)
        return
    if quiet:
        return
    console.print(_parity_table(report))
    if report["parity_skipped"]:
        console.print(f"[yellow]parity check skipped:[/yellow] {report['parity_skipped']}")
    worst = max((c["max_abs_diff"] for c in report["checks"]), default=float("nan"))
    console.print(
        f"wrote [bold]{report['path']}[/bold] ({report['file_size'] / 1e6:.1f} MB, opset {report['opset']}, "
        f"{report['exporter']} exporter, {'fp16' if fp16 else 'fp32'}); largest difference {worst:.3g}; "
        f"{report['seconds']:.1f} s",
        highlight=False,
    )
