"""The VGG19 features of stage 2's semantic term: looked up only when a stage-2 step will run with
the term weighted, and when missing said in one short line (the full list of what was tried goes
to the log and the checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from invrep_cli.distenv import DistInfo

Emit = Callable[[dict[str, Any]], None]

#: the longest reason quoted in the one warning line (a connection error's text runs to 700 characters)
SHORT_REASON = 90


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHORT_REASON else text[: SHORT_REASON - 3] + "..."


def setup_semantic(
    *,
    weight: float,
    lir_steps_left: int,
    vgg_weights: str | None,
    device: torch.device,
    channels_last: bool,
    dist: DistInfo,
    emit: Emit,
    warn: Callable[[str], None],
) -> tuple[nn.Module | None, str]:
    """(VGG19 feature module or None, the note the log and checkpoint keep)."""
    if weight == 0:
        return None, "disabled: --w-semantic 0"
    if lir_steps_left <= 0:
        return None, "not used: the run has no stage-2 (LIR) steps left"
    from invrep_cli.vgg import resolve_vgg

    def progress(done: int, total: int | None) -> None:
        emit({"event": "download", "what": "VGG19 weights", "done": done, "total": total})

    if dist.is_main:
        res = resolve_vgg(vgg_weights, progress=progress)
    if dist.enabled:
        import torch.distributed as td

        td.barrier()  # rank 0 downloads into the cache; the others then read it from there
        if not dist.is_main:
            res = resolve_vgg(vgg_weights, allow_download=False)
    module = res.module
    if dist.enabled:
        import torch.distributed as td

        flag = torch.tensor([1 if module is not None else 0], device=device)
        td.all_reduce(flag, op=td.ReduceOp.MIN)  # every rank must run the same loss
        if int(flag.item()) == 0:
            module = None
    if module is None:
        last = res.tried[-1] if res.tried else "not found"
        warn(
            f"semantic-consistency loss DISABLED (weight 0): no VGG19 weights ({_short(last)}); "
            "--vgg-weights PATH to torchvision's vgg19-dcbb9e9d.pth enables it"
        )
        return None, f"disabled: no VGG19 weights ({res.reason})"
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module, f"enabled: {res.source}"
