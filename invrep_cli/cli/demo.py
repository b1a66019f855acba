"""Restore noisy sample photos with the bundled weights and write a side-by-side comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invrep_cli.cli.common import DeviceOpt, WeightsOpt, console, core_errors


def demo_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for clean/, noisy/, restored/ and comparison.png.")
    ] = Path("demo"),
    sigma: Annotated[float, typer.Option("--sigma", help="Gaussian noise level on the 0-255 scale.")] = 25.0,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Add seeded noise to scikit-image's bundled sample photos (offline), add a clean photo as it
    is (and a real camera-noise crop when ../shared/data/CC15 is beside the checkout), restore them
    with the bundled weights (or --weights), and write OUT/comparison.png: noisy | restored | clean,
    with PSNR."""
    from invrep_cli.cli.restore import run_and_report
    from invrep_cli.demo import comparison_image, default_data_dir, make_samples
    from invrep_cli.restore import RestoreConfig

    with core_errors():
        samples = make_samples(out, sigma=sigma, data_dir=default_data_dir())
        # the samples are rewritten each time, so their outputs are always redone
        config = RestoreConfig(
            input=str(out / "noisy"), out=str(out / "restored"), weights=weights, device=device, fmt="png",
            overwrite=True,
        )
        summary = run_and_report(config)
        if summary.failed:
            raise typer.Exit(1)
        scores = comparison_image(samples, out / "restored", out / "comparison.png")
    for s in scores:
        given = "clean input " if s["clean_input"] else f"input {s['psnr_noisy']:6.2f} dB"
        console.print(f"{s['image']:<18} {given}  ->  restored {s['psnr_restored']:6.2f} dB")
    console.print(f"comparison: {out / 'comparison.png'}")
