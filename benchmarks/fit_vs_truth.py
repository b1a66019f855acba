"""How far the noise fit is from the truth on a fluorescence testbed made by new_domain.py, whose
noise is known: the photon gain, and the noise std at the black level (read noise alone there).

    python benchmarks/fit_vs_truth.py runs/dim16 --bright 0.05 --offset 0.0015 --read 0.0005
    python benchmarks/fit_vs_truth.py runs/fluo            # new_domain.py's defaults
    ... --free-intercept    # the line of variance over intensity may cross 0 above black

Give the options the folder was made with. The fit's line (variance = gain * I + floor) has no black
level: with one, the true line has a negative intercept (-gain * black + read^2), and the fit, which
keeps the floor >= 0, refits through 0, which its darkest bins pull low. ``--free-intercept`` keeps
the negative intercept, to show what a black level in the model could give (the sampler would then
have to shift the photon counts by it: it is not in the tool).
"""

from __future__ import annotations

import argparse
import glob

import numpy as np
from new_domain import BRIGHT, OFFSET, PEAK, READ  # benchmarks/ is on the path when a script here runs

from invrep_cli import noise
from invrep_cli.data import read_image

#: the tool's line (floor >= 0), kept before --free-intercept puts free_line in its place
fixed_line = noise._fit_line


def free_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares y = gain * x + floor, gain >= 0, the floor free to go below 0."""
    if x.size < 2:
        return fixed_line(x, y, w)
    a = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
    gain, floor = np.linalg.lstsq(a, y * w, rcond=None)[0]
    return (float(gain), float(floor)) if gain >= 0 else fixed_line(x, y, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("testbed", help="a folder made by new_domain.py --noise fluorescence")
    parser.add_argument("--photons", type=float, default=PEAK)
    parser.add_argument("--bright", type=float, default=BRIGHT)
    parser.add_argument("--offset", type=float, default=OFFSET)
    parser.add_argument("--read", type=float, default=READ)
    parser.add_argument("--free-intercept", action="store_true")
    args = parser.parse_args()
    if args.free_intercept:
        noise._fit_line = free_line
    files = sorted(glob.glob(f"{args.testbed}/noisy/*"))
    fits = noise.fit_noise_model([read_image(f) for f in files], paths=files).fitted
    gains = np.array([f.gain[0] for f in fits])
    floors = np.array([f.floor[0] for f in fits])
    gain = args.bright / args.photons
    at_black = gains * args.offset + floors
    print(f"{args.testbed}: {len(fits)} fits of {len(files)} files, {sum(f.photons for f in fits)} count photons")
    print(f"gain: median {np.median(gains):.5f}, truth {gain:.5f} ({np.median(gains) / gain:.2f}x)")
    print(f"std at the black level: median {np.median(np.sqrt(np.maximum(at_black, 0))) / args.read:.2f}x the "
          f"truth's (read noise {args.read:.5f}); fits drawing none there: {np.mean(at_black <= 0):.0%}")


if __name__ == "__main__":
    main()
