"""`invrep train` with the counted-photons test switched off (``noise.SHOT_RATIO`` = inf): every
fit draws Gaussian noise, as before the test existed. The other arm of a paired measurement of
what drawing shot noise as counts is worth (README, Round PHOTONS).

    python benchmarks/train_without_photons.py train --noisy DIR --clean DIR --out RUN ...
"""

from __future__ import annotations

import math
import sys

from invrep_cli import noise
from invrep_cli.cli import app

if __name__ == "__main__":
    noise.SHOT_RATIO = math.inf
    app(sys.argv[1:], prog_name="invrep")
