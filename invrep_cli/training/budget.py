"""``--time DURATION``: how many steps fit a wall-clock budget, from the rate a short probe measured."""

from __future__ import annotations

import math
import re

from invrep_cli.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """``45s``, ``20m``, ``2h``, ``1h30m`` -> seconds; UsageError otherwise (a unit is required:
    a bare number could mean minutes or seconds)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise UsageError(f"--time {text!r}: expected a duration such as 45s, 20m, 2h or 1h30m")
    seconds = sum(float(value) * _UNIT[unit] for value, unit in _PART.findall(compact))
    if seconds <= 0:
        raise UsageError(f"--time {text!r}: must be more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """1234.5 -> '20m35s'; short and unambiguous for the plan line."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def stage1_steps_for_budget(
    budget_s: float,
    elapsed_s: float,
    stage1_step_s: float,
    lir_steps: int = 0,
    stage2_step_s: float = 0.0,
    reserve_s: float = 0.0,
) -> int:
    """Stage-1 steps that fit what is left of the budget after what has run (``elapsed_s``: set-up
    and the probe), the LIR steps asked for, and ``reserve_s`` (checkpoints and the final report).
    UsageError when not even one step fits."""
    left = budget_s - elapsed_s - reserve_s - lir_steps * stage2_step_s
    steps = math.floor(left / stage1_step_s) if stage1_step_s > 0 else 0
    if steps < 1 and lir_steps < 1:
        raise UsageError(
            f"--time {format_duration(budget_s)} leaves no time to train: set-up took {elapsed_s:.0f} s and a step "
            f"takes {stage1_step_s:.2f} s (give more time, or --steps N)"
        )
    return max(0, steps)
