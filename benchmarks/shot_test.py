"""Which noisy folders the fit reads as counted photons (``noise.py``: shot noise drawn as
gain * Poisson(I / gain) - I), and the skew ratio behind each fit's vote. The folders are this
project's testbeds and real camera sets, plus test images given Poisson noise and Gaussian noise of
the same signal-dependent variance, which the test must tell apart in colour.

    python benchmarks/shot_test.py            # needs ../shared/data; the testbeds in runs/ if there

Ratios are printed for the fits the blur gate lets through to the skew test (white: blur <=
SHOT_MAX_BLUR) and that are in colour (a gray white fit counts photons untested, Round WHITE); "-"
where none was; the last column is the level spread `train --noise-scale auto` draws the folder at.
Each test is one fit's vote (a pooled group of small images votes once); a folder counts photons
when most of its fits vote so.
``--ungated`` lifts the blur gate, to show what the skew test alone would say.
"""

from __future__ import annotations

import argparse
import glob
import math
from collections.abc import Callable

import numpy as np
from new_domain import as_8bit as to_uint8  # benchmarks/ is on the path when a script here runs

from invrep_cli import noise
from invrep_cli.data import read_image

SHARED = "../shared/data"


def as_8bit(x: np.ndarray) -> np.ndarray:
    """As saved in 8 bits, back in [0, 1] as the fit reads files."""
    return to_uint8(x) / 255.0


def folders(rng: np.random.Generator) -> list[tuple[str, str, Callable[[np.ndarray], np.ndarray] | None]]:
    return [
        ("fluorescence testbed (runs/fluo)", "runs/fluo/noisy/*", None),
        ("correlated testbed (runs/newdom)", "runs/newdom/noisy/*", None),
        ("white testbed (runs/white)", "runs/white/noisy/*", None),
        ("banded testbed (runs/band)", "runs/band/noisy/*", None),
        ("CC15 noisy", f"{SHARED}/CC15/*_real.png", None),
        ("PolyU100 noisy (JPEG)", f"{SHARED}/PolyU100/*_real.JPG", None),
        ("BSD68, Poisson 30 photons", f"{SHARED}/BSD68/*", lambda x: as_8bit(rng.poisson(x * 30) / 30)),
        ("BSD68, Gaussian var I/30", f"{SHARED}/BSD68/*",
         lambda x: as_8bit(x + np.sqrt(x / 30) * rng.standard_normal(x.shape))),
        ("CBSD68, Poisson 300 photons", f"{SHARED}/CBSD68/*", lambda x: as_8bit(rng.poisson(x * 300) / 300)),
        ("CBSD68, Gaussian var I/300 + 5^2", f"{SHARED}/CBSD68/*",
         lambda x: as_8bit(x + np.sqrt(x / 300 + (5 / 255) ** 2) * rng.standard_normal(x.shape))),
        ("BSD68 clean", f"{SHARED}/BSD68/*", None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ungated", action="store_true", help="no blur gate")
    if parser.parse_args().ungated:
        noise.SHOT_MAX_BLUR = math.inf
    seen: list[float] = []
    test = noise._shot_ratio

    def spy(*args):  # type: ignore[no-untyped-def]
        seen.append(test(*args))
        return seen[-1]

    noise._shot_ratio = spy  # type: ignore[assignment]
    rng = np.random.default_rng(0)
    print("| folder | fits | counted photons | blur p10 / median / p90 | skew ratio p10 / median / p90 "
          "| tests voting photons | spread (--noise-scale auto) |")
    print("|---|---|---|---|---|---|---|")
    for name, pattern, make in folders(rng):
        files = sorted(glob.glob(pattern))  # all of them: what train reads
        if not files:
            print(f"| {name} | not here | | | | | |")
            continue
        images = [read_image(f) for f in files]
        if make is not None:
            images = [make(img) for img in images]
        seen.clear()
        fits = noise.fit_noise_model(images, paths=None if make else files).fitted
        blur = np.percentile([f.blur for f in fits], [10, 50, 90])
        ratio = " / ".join(f"{v:.2f}" for v in np.percentile(seen, [10, 50, 90])) if seen else "-"
        votes = f"{sum(r >= noise.SHOT_RATIO for r in seen)} of {len(seen)}"
        print(f"| {name} | {len(fits)} | {sum(f.photons for f in fits)} | "
              f"{' / '.join(f'{v:.2f}' for v in blur)} | {ratio} | {votes} | "
              f"{'{:g}-{:g}'.format(*noise.auto_level_range(fits))} |")


if __name__ == "__main__":
    main()
