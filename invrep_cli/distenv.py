"""torchrun's environment, read in one place for both halves of the house: training (one
process group, one GPU per rank) and restore (each rank takes its share of the files)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DistInfo:
    """This process's place among torchrun's: rank, world size, local rank (the GPU it takes)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them; a single process when they are absent."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistInfo()
    return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
