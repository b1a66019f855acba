"""`invrep train` with the counted-photons test changed, for paired measurements of what drawing
shot noise as counts is worth (README, Round PHOTONS):

    python benchmarks/train_photons.py off train --noisy DIR --clean DIR --out RUN ...
    python benchmarks/train_photons.py ungated train --noisy DIR --clean DIR --out RUN ...
    python benchmarks/train_photons.py on train --noisy DIR --clean DIR --out RUN ...

``off``: the test never passes (``noise.SHOT_RATIO`` = inf), so every fit draws Gaussian noise, as
before the test existed. ``ungated``: no blur gate (``SHOT_MAX_BLUR`` = inf), so the skew test alone
decides (the photon-count gate this mode also lifted, 100 photons at full scale, is gone since Round
GATE).
``on``: every fit with a signal-dependent part (gain > 0) that is not a JPEG counts photons, whatever
its skew and blur: what a wrong call of the test costs on a folder whose noise is Gaussian.
"""

from __future__ import annotations

import math
import sys

from invrep_cli import noise
from invrep_cli.cli import app

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "off":
        noise.SHOT_RATIO = math.inf
    elif mode == "ungated":
        noise.SHOT_MAX_BLUR = math.inf
    elif mode == "on":
        noise.SHOT_MAX_BLUR = math.inf
        noise.SHOT_RATIO = -math.inf
    else:
        sys.exit(f"usage: {sys.argv[0]} off|ungated|on INVREP-ARGS...")
    app(sys.argv[2:], prog_name="invrep")
