"""Score restorers on a run's own held-out clean images under every kind of noise the default must
handle: none (how much a clean photo is changed), Gaussian, Poisson-Gaussian, gray, and the camera
noise fitted to the run's noisy folder (read from the run's log). The held-out images were never
trained on, and no test set is read: this is what a choice of checkpoint or mixture may look at.

  python benchmarks/held_out.py runs/data/CBSD432-held runs/mix/checkpoints/step_*.pt \
      weights/lir-unet-gauss.safetensors --noise-log runs/mix/log.jsonl --json
  python benchmarks/held_out.py runs/data/held8 weights/lir-unet-mix.safetensors --strength 0.5,1,1.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invrep_cli.checkpoint import load_restorer
from invrep_cli.data import add_noise as add_spec_noise
from invrep_cli.data import list_images, parse_noise, read_image
from invrep_cli.noise import NoiseModel
from invrep_cli.synthetic import add_noise, image_metrics, noise_seed, to_uint8
from invrep_cli.training.report import centre_crop

#: case -> noise spec ("clean": none; "gray25": Gaussian 25 on the gray image; "camera": the fit at
#: its fitted level, "camera2" at twice it: JPEG'd camera noise reads low, hence --noise-scale)
CASES = ("clean", "gaussian:15", "gaussian:25", "gaussian:50", "gray25", "poisson-gaussian:10-10",
         "poisson-gaussian:30-30", "correlated:20-20", "camera", "camera2")


def camera_model(log: Path) -> NoiseModel:
    """The run's fitted noise model alone (its mix removed), at the fitted level (no --noise-scale)."""
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "noise_model":
            model = NoiseModel.from_dict(record["model"])
            return dataclasses.replace(model, mix=(), level_range=(1.0, 1.0))
    raise SystemExit(f"{log}: no noise_model record")


def make_cases(paths: list[Path], crop: int, camera: NoiseModel | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = []
    for case in CASES:
        if case.startswith("camera") and camera is None:
            continue
        for i, path in enumerate(paths):
            clean = to_uint8(centre_crop(read_image(path), crop))
            if case == "clean":
                noisy = clean
            elif case == "gray25":
                clean = np.asarray(Image.fromarray(clean).convert("L"))
                noisy = add_noise(clean, 25, noise_seed(0, i, 25))
            elif case.startswith("gaussian:"):
                sigma = float(case.split(":")[1])
                noisy = add_noise(clean, sigma, noise_seed(0, i, sigma))
            elif case.startswith("camera"):
                assert camera is not None
                model = camera if case == "camera" else dataclasses.replace(camera, level_range=(2.0, 2.0))
                gen = torch.Generator().manual_seed(1000 + i)
                t = torch.from_numpy(clean.transpose(2, 0, 1)[None] / np.float32(255.0))
                noisy = to_uint8(model.sample(t, gen)[0].numpy().transpose(1, 2, 0))
            else:
                noisy = to_uint8(add_spec_noise(clean / np.float32(255.0), parse_noise(case), np.random.default_rng(i)))
            cases.append((case, clean, noisy))
    return cases


class Blended(torch.nn.Module):
    """What `invrep restore --strength S` runs: input + S x (restored - input), clipped to [0, 1]."""

    def __init__(self, restorer: torch.nn.Module, strength: float):
        super().__init__()
        self.restorer, self.strength = restorer, strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.restorer(x).float()
        return out if self.strength == 1.0 else (x + self.strength * (out - x)).clamp(0.0, 1.0)


def strengths(text: str) -> list[float]:
    """--strength's comma list ("1" by default: the model as trained)."""
    return [float(s) for s in text.split(",")]


def restore(restorer: torch.nn.Module, noisy: np.ndarray) -> np.ndarray:
    gray = noisy.ndim == 2
    chw = np.repeat(noisy[None], 3, 0) if gray else noisy.transpose(2, 0, 1)
    with torch.inference_mode():
        out = restorer(torch.from_numpy(chw[None] / np.float32(255.0)))[0].numpy().transpose(1, 2, 0)
    out = to_uint8(out)
    # a gray image is restored as three equal channels, as restore feeds it, and read back as their mean
    return np.rint(out.astype(np.float64).mean(-1)).astype(np.uint8) if gray else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clean_dir", type=Path, help="held-out clean images (not trained on)")
    parser.add_argument("models", type=Path, nargs="+", help="train checkpoints (.pt) or restorer files")
    parser.add_argument("--noise-log", type=Path, help="a run's log.jsonl: adds its fitted camera noise")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--strength", type=strengths, default=[1.0],
                        help="comma list of restore --strength values to score each model at")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = list_images(args.clean_dir)
    cases = make_cases(paths, args.crop, camera_model(args.noise_log) if args.noise_log else None)
    names = list(dict.fromkeys(c for c, _, _ in cases))
    noisy_row = {c: round(float(np.mean([image_metrics(cl, n)[0] for k, cl, n in cases if k == c and k != "clean"]
                                        or [float("nan")])), 3) for c in names}
    rows = []
    for model in args.models:
        loaded, meta = load_restorer(model)
        loaded.eval()
        for strength in args.strength:
            restorer = Blended(loaded, strength)
            scores: dict[str, list[float]] = {c: [] for c in names}
            for case, clean, noisy in cases:
                scores[case].append(image_metrics(clean, restore(restorer, noisy))[0])
            row = {"model": str(model), "step": meta.get("step") or meta.get("trained_steps")}
            if args.strength != [1.0]:
                row["strength"] = strength
            row.update({c: round(float(np.mean(v)), 3) for c, v in scores.items()})
            row["mean_noisy_cases"] = round(float(np.mean([row[c] for c in names if c != "clean"])), 3)
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    result = {"images": len(paths), "crop": args.crop, "cases": names, "noisy": noisy_row, "models": rows}
    print(json.dumps(result, indent=1) if args.json else json.dumps({"noisy": noisy_row}))


if __name__ == "__main__":
    main()
