"""One comparison image from one CC15 pair (issue 10): a crop of noisy | NLM at the estimated level |
model A | model B | reference, scaled up by nearest neighbour so the grain stays visible, each panel
labelled with its PSNR on the whole image (as `invrep bench --pairs` scores it).

NLM gets the level estimated from the noisy image (noise.estimate_sigma, as bench's "estimated"
rows), not the oracle one: the comparison a user without the reference would see. The models
restore the whole image as `invrep restore` would (same plan, tiles and quantisation), then the
crop is cut, so tile borders and context are those of real use. About 10 s per model on 2 cores
for a 512 x 512 pair.

    python benchmarks/cc15_crops.py cc15_crop.png --weights-a lir-unet-gauss --weights-b lir-unet-real
    python benchmarks/cc15_crops.py out.png -a a.safetensors -b b.safetensors --pair d800_iso6400_2 --at 200,300
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from invrep_cli.baselines import nlm_denoise, nlm_h
from invrep_cli.demo import labelled_row
from invrep_cli.errors import InvrepError
from invrep_cli.pairs import NOISY_PATTERN, REF_PATTERN, estimated_sigma, match_pairs
from invrep_cli.synthetic import psnr, read_uint8

CC15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "CC15"


def restore_array(noisy: np.ndarray, weights: str, device: str = "cpu", threads: int | None = None) -> np.ndarray:
    """uint8 image -> uint8 restored image through restore's own plan (backend, tile choice, overlap)."""
    from invrep_cli.restore import RestoreConfig, plan_restore, restore_pixels

    plan = plan_restore(RestoreConfig(weights=weights, device=device, threads=threads))
    samples = noisy if noisy.ndim == 3 else noisy[..., None]
    out = restore_pixels(samples, plan.backend, plan.tile.tile, plan.config.tile_overlap, plan.tile.batch_size,
                         out_dtype=np.uint8)
    return out.reshape(noisy.shape)


def crop_box(shape: tuple[int, ...], size: int, at: tuple[int, int] | None) -> tuple[slice, slice]:
    """``size`` x ``size`` from top-left ``at`` (default: the centre), kept inside the image."""
    h, w = shape[:2]
    size = min(size, h, w)
    y, x = at if at is not None else ((h - size) // 2, (w - size) // 2)
    y, x = min(max(y, 0), h - size), min(max(x, 0), w - size)
    return slice(y, y + size), slice(x, x + size)


def make_comparison(
    out: Path, weights_a: str, weights_b: str, folder: Path = CC15, pair: str | None = None,
    labels: tuple[str | None, str | None] = (None, None), crop: int = 160, at: tuple[int, int] | None = None,
    scale: int = 2, device: str = "cpu", threads: int | None = None,
    noisy_pattern: str = NOISY_PATTERN, ref_pattern: str = REF_PATTERN,
) -> dict[str, float]:
    """Write the comparison PNG to ``out``; returns each panel's whole-image PSNR (dB)."""
    pairs = match_pairs(folder, noisy_pattern, ref_pattern)
    chosen = next((p for p in pairs if p.name == pair), None) if pair else pairs[0]
    if chosen is None:
        raise SystemExit(f"no pair {pair!r} in {folder}; pairs: {', '.join(p.name for p in pairs)}")
    noisy, reference = read_uint8(chosen.noisy), read_uint8(chosen.reference)
    sigma = estimated_sigma(noisy)
    nlm = nlm_denoise(noisy, nlm_h(sigma, noisy.ndim == 2)) if sigma > 0 else noisy
    names = [label or Path(w).stem for label, w in zip(labels, (weights_a, weights_b), strict=True)]
    images = {
        "noisy": noisy,
        f"NLM (est. sigma {sigma:.1f})": nlm,
        names[0]: restore_array(noisy, weights_a, device, threads),
        names[1]: restore_array(noisy, weights_b, device, threads),
    }
    scores = {name: psnr(reference, img) for name, img in images.items()}
    box = crop_box(noisy.shape, crop, at)
    panels = [(f"{name} {scores[name]:.2f} dB", img[box]) for name, img in images.items()]
    panels.append((f"reference ({chosen.name})", reference[box]))
    side = box[0].stop - box[0].start
    from PIL import Image

    row = labelled_row(panels, side * scale, Image.Resampling.NEAREST, font_size=max(10, side * scale // 20))
    out.parent.mkdir(parents=True, exist_ok=True)
    row.save(out)
    return scores


def _point(text: str) -> tuple[int, int]:
    y, x = (int(v) for v in text.split(","))
    return y, x


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--weights-a", "-a", required=True, help="first model: registry name or weights path")
    parser.add_argument("--weights-b", "-b", required=True, help="second model: registry name or weights path")
    parser.add_argument("--label-a", help="panel label of the first model (default: its file or registry name)")
    parser.add_argument("--label-b", help="panel label of the second model")
    parser.add_argument("--folder", type=Path, default=CC15, help=f"folder of pairs (default {CC15})")
    parser.add_argument("--pair", help="pair name, e.g. d800_iso6400_2 (default: the first by name)")
    parser.add_argument("--crop", type=int, default=160, help="crop side in pixels (default 160)")
    parser.add_argument("--at", type=_point, help="crop's top-left corner as Y,X (default: centred)")
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour magnification (default 2)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda (default cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch / ONNX Runtime")
    parser.add_argument("--noisy-pattern", default=NOISY_PATTERN)
    parser.add_argument("--ref-pattern", default=REF_PATTERN)
    args = parser.parse_args(argv)
    try:
        scores = make_comparison(args.out, args.weights_a, args.weights_b, args.folder, args.pair,
                                 (args.label_a, args.label_b), args.crop, args.at, args.scale, args.device,
                                 args.threads, args.noisy_pattern, args.ref_pattern)
    except InvrepError as exc:  # no pairs, unmatched files, unknown weights: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{args.out}: " + ", ".join(f"{name} {score:.2f} dB" for name, score in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
