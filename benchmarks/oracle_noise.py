"""`invrep train` with stage 1 drawing a test domain's TRUE noise instead of the noise fitted to the
noisy folder: the oracle the fitted model stands in for. The gap between an oracle run and the same
run on the fit bounds what any better noise model can give at that step count, stage 2's G_X
included (G_X at its best draws the true noise). Issue 20 asks stage 2 for +0.3 dB; where the oracle
gains less than that over the fit, no noise learning can reach it at the same steps.

    python benchmarks/oracle_noise.py --noise fluorescence train --noisy DIR --clean DIR --out RUN ...
    python benchmarks/oracle_noise.py --noise white train ...     # new_domain.py --noise white

Everything else is the command as given (the fit is still made and logged; the init-weights choice
reads it); only the crops' noise is drawn from benchmarks/new_domain.py's generator, at its
default constants (a domain made with ``new_domain.py --photons N`` other than 30 has no oracle here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import new_domain  # noqa: E402

from invrep_cli.cli import app  # noqa: E402
from invrep_cli.noise import NoiseModel, as_saved  # noqa: E402


def fluorescence(clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """new_domain.fluorescence_noise on a batch of gray crops (N x 3 x H x W, equal channels)."""
    gray = clean[:, :1]
    rate = (gray - new_domain.OFFSET).clamp(min=0) * new_domain.PEAK / new_domain.BRIGHT
    photons = torch.poisson(rate, generator=generator) * new_domain.BRIGHT / new_domain.PEAK
    read = new_domain.READ * torch.randn(gray.shape, generator=generator, dtype=gray.dtype, device=gray.device)
    return as_saved(new_domain.OFFSET + photons + read).expand_as(clean).contiguous()


def white(clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """new_domain.correlated_noise with blur 0 (``--noise white``) on a batch of gray crops: white
    signal-dependent Gaussian noise, the same draw in all three channels."""
    gray = clean[:, :1]
    gain, floor = new_domain.SHOT * new_domain.STD**2 / 0.5, (1 - new_domain.SHOT) * new_domain.STD**2
    field = torch.randn(gray.shape, generator=generator, dtype=gray.dtype, device=gray.device)
    return as_saved(gray + (gain * gray + floor).sqrt() * field).expand_as(clean).contiguous()


ORACLES = {"fluorescence": fluorescence, "white": white}


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] != "--noise" or sys.argv[2] not in ORACLES:
        sys.exit(f"usage: {sys.argv[0]} --noise {'|'.join(ORACLES)} INVREP-ARGS...")
    draw = ORACLES[sys.argv[2]]
    NoiseModel._sample_own = lambda self, clean, generator=None: draw(clean, generator)  # type: ignore[method-assign]
    app(sys.argv[3:], prog_name="invrep")


if __name__ == "__main__":
    main()
