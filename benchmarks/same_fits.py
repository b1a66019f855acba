"""Whether two runs drew from the same noise fits, so that a paired comparison differs only in what
its arms changed: each argument is a run's ``log.jsonl`` (the fits it logged) or a noisy folder
(fitted now, as ``invrep train`` fits it by default).

    python benchmarks/same_fits.py runs/spreadw/wm/log.jsonl runs/white/wg/log.jsonl
    python benchmarks/same_fits.py runs/white/wu/log.jsonl runs/white/noisy
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from invrep_cli.config import TrainConfig
from invrep_cli.data import IMAGE_EXTENSIONS
from invrep_cli.training.noise_setup import fit_folder


def fits(source: str) -> list[dict]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        model = fit_folder(files, TrainConfig.noise_fit_images, TrainConfig.match_levels, str(path), print)
        return [f.to_dict() for f in model.fitted]
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "noise_model":
            return event["model"]["fitted"]
    sys.exit(f"{source}: no noise_model event")


if __name__ == "__main__":
    a, b = fits(sys.argv[1]), fits(sys.argv[2])
    differ = sum(x != y for x, y in zip(a, b, strict=False))
    print(f"{len(a)} and {len(b)} fits; {differ} of {min(len(a), len(b))} differ")
