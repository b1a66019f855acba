"""`invrep train` with every fitted noise model edited before stage 1 draws from it, for paired
measurements of what one part of the fit costs (README, Round BIAS's leads):

    python benchmarks/train_fit_edit.py blur=0 train --noisy DIR --clean DIR --out RUN ...
    python benchmarks/train_fit_edit.py blur=0,photons=0 train ...

``blur=B`` sets every fit's spatial blur to B px; ``photons=0|1`` draws the shot noise Gaussian or
as counts. Everything else is the command as given; the edited fits are what the run logs.
"""

from __future__ import annotations

import dataclasses
import sys

from invrep_cli.cli import app
from invrep_cli.training import noise_setup

FIELDS = {"blur": float, "photons": lambda v: bool(int(v))}


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    edits = {}
    for item in sys.argv[1].split(","):
        name, _, value = item.partition("=")
        if name not in FIELDS:
            sys.exit(f"unknown field {name!r}: {', '.join(FIELDS)}")
        edits[name] = FIELDS[name](value)
    fit_folder = noise_setup.fit_folder

    def edited(*args, **kwargs):
        model = fit_folder(*args, **kwargs)
        return dataclasses.replace(model, fitted=tuple(dataclasses.replace(f, **edits) for f in model.fitted))

    noise_setup.fit_folder = edited
    app(sys.argv[2:], prog_name="invrep")


if __name__ == "__main__":
    main()
