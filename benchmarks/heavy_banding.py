"""Round HEAVY-BAND's banding readings on made-up images (README): what the plain banding test
and the heavy one (``noise.debanded(..., heavy=True)``, used on folders read with clipped blocks)
read on white signal-dependent noise (75 % shot at mid-gray) with and without real banding, 10
images of 256 x 256 each, and the heavy test's chance spread over the plain one's
(``noise.PAIRWISE_SPREAD``).

    python benchmarks/heavy_banding.py
"""

from __future__ import annotations

import numpy as np

from invrep_cli.noise import _column_offsets, debanded

SIZE = 256


def noisy(img: np.ndarray, std: float, column: float, row: float, rng: np.random.Generator) -> np.ndarray:
    s = std / 255
    x = img + np.sqrt(1.5 * s * s * img + 0.25 * s * s) * rng.standard_normal(img.shape)
    x = x + column / 255 * rng.standard_normal((1, SIZE)) + row / 255 * rng.standard_normal((SIZE, 1))
    return np.repeat(np.round(np.clip(x, 0, 1) * 255)[:, :, None] / 255, 3, axis=2)


def main() -> None:
    rng = np.random.default_rng(1)
    yy = np.mgrid[0:SIZE, 0:SIZE][0] / SIZE
    scenes = {
        "flat mid-gray": np.full((SIZE, SIZE), 0.5),
        "vertical ramp 0.05-0.95": 0.05 + 0.9 * yy,
        "bright top, dark bottom": np.where(yy < 0.5, 0.9, 0.1),
    }
    cases = [(name, std, col, row) for name in scenes for std, col, row in
             ((50, 0, 0), (75, 0, 0), (50, 10, 0), (75, 15, 0), (50, 0, 10))]  # fmt: skip
    print("| scene | noise std | true column / row banding | plain: column / row read (banded of 10) "
          "| heavy: column / row read (banded of 10) |")
    print("|---|---|---|---|---|")
    for name, std, col, row in cases:
        images = [noisy(scenes[name], std, col, row, rng) for _ in range(10)]
        cells = []
        for heavy in (False, True):
            reads = np.array([debanded(img, heavy=heavy)[1:] for img in images]) * 255
            cells.append(f"{reads[:, 0].mean():.2f} / {reads[:, 1].mean():.2f} "
                         f"({int((reads > 0).any(axis=1).sum())})")
        print(f"| {name} | {std} | {col} / {row} | {cells[0]} | {cells[1]} |")
    ratios = []
    for _ in range(200):
        gray = (0.5 + 0.05 * rng.standard_normal((SIZE, SIZE)))[:, :, None]
        ratios.append((_column_offsets(gray, heavy=True)[0].var(), _column_offsets(gray)[0].var()))
    r = np.array(ratios).mean(axis=0)
    print(f"\nheavy / plain variance of the column offsets on white Gaussian noise: {r[0] / r[1]:.3f}")


if __name__ == "__main__":
    main()
