"""How much a 2-step run from the bundled model loses of it, with and without stage 1's learning-rate
ramp and the moving average's prior steps for a trained start: the default-recipe test of
tests/test_training.py (2 steps at batch 2 from `lir-unet-mix`) with the two constants set by hand,
printing the no-reference report's start and trained scores.

  python benchmarks/two_step_start.py RAMP_STEPS PRIOR_STEPS OUT_DIR   (1 0: neither; 50 100: today's)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import invrep_cli.training.model as model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/


def main() -> None:
    ramp, prior, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    model.LR_RAMP_STEPS, model.TRAINED_START_PRIOR_STEPS = ramp, prior
    from tests import test_training

    out.mkdir(parents=True, exist_ok=True)
    try:
        test_training.test_default_recipe_starts_from_the_bundled_model_and_reports(out)
        verdict = "within 1 dB of its start"
    except AssertionError:
        verdict = "lost over 1 dB"
    lines = (out / "run" / "log.jsonl").read_text().splitlines()
    report = next(json.loads(line) for line in lines if '"report"' in line)
    print(f"ramp {ramp}, prior {prior}: start {report['start_estimated_psnr']} dB, "
          f"after 2 steps {report['trained_estimated_psnr']} dB ({verdict})")


if __name__ == "__main__":
    main()
