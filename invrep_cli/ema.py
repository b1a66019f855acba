"""The exponential moving average of the restorer that training ships."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class MovingAverage:
    """``average <- average + (1 - d) (live - average)`` over parameters and BatchNorm statistics
    alike (integer buffers are copied), with the decay warmed up as min(d, (1 + p + t) / (10 + p + t))
    so the average forgets its start: at step t it spans about (10 + p + t) / 9 steps. ``prior_steps``
    p counts a trained start as p steps already averaged: a run of a few steps then ships mostly its
    start (2 steps at batch 2 cost the bundled model 2.7 dB of the no-reference score with p = 0,
    0.2 dB with p = 100, stage 1's learning-rate ramp on in both; ``benchmarks/two_step_start.py``),
    while after a run of a thousand steps the start's weight is gone. (The
    full decay from the first step, ``warm_up=False``, kept 30 % of a trained start after 1,200 steps
    at 0.999; only checkpoints written before this change still run that way.) The GAN terms make
    raw weights swing from one checkpoint to the next; the average is what ``restorer.safetensors``
    holds (as Real-ESRGAN ships ``params_ema``)."""

    def __init__(
        self, live: nn.Module, decay: float, state: dict[str, Any] | None = None, warm_up: bool = True,
        prior_steps: int = 0,
    ) -> None:
        self.decay = decay
        self.warm_up = warm_up
        self.prior_steps = prior_steps
        self.average = copy.deepcopy(live).eval().requires_grad_(False)
        if state is not None:
            self.average.load_state_dict(state)
        avg_state, live_state = self.average.state_dict(keep_vars=True), live.state_dict(keep_vars=True)
        pairs = [(avg_state[k], live_state[k]) for k in avg_state]
        self._float = ([a for a, _ in pairs if a.is_floating_point()], [v for a, v in pairs if a.is_floating_point()])
        self._other = (
            [a for a, _ in pairs if not a.is_floating_point()],
            [v for a, v in pairs if not a.is_floating_point()],
        )

    @torch.no_grad()
    def update(self, step: int) -> None:
        """One update after training step ``step`` (0-based count of steps done before it)."""
        t = self.prior_steps + step
        decay = min(self.decay, (1 + t) / (10 + t)) if self.warm_up else self.decay
        # one fused kernel per list instead of one per tensor: on a GPU the per-tensor launches cost
        # more than a small restorer's training step
        torch._foreach_lerp_(self._float[0], [v.detach() for v in self._float[1]], 1.0 - decay)
        if self._other[0]:
            torch._foreach_copy_(self._other[0], self._other[1])

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()
