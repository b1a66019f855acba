"""The DistributedDataParallel path: two CPU processes on the gloo backend under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import write_images


def test_two_gloo_processes_write_a_checkpoint(tmp_path: Path) -> None:
    write_images(tmp_path / "clean", 6, size=(40, 40))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    env = {
        **os.environ,
        "INVREP_HOME": str(tmp_path / "home"),
        "INVREP_VGG_URL": f"http://127.0.0.1:{closed_port}/vgg19-dcbb9e9d.pth",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("INVREP_VGG_WEIGHTS", None)
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "invrep_cli", "train", "--clean", str(tmp_path / "clean"), "--synthetic", "gaussian:25",
        "--out", str(out), "--config", "lir-lite", "--width", "4", "--res-blocks", "1", "--disc-scales", "2",
        "--crop-size", "32", "--batch-size", "2", "--steps", "2", "--workers", "0", "--device", "cpu",
        "--log-every", "1", "--quiet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and len(ckpt["networks"]) == 8
    # no "module." prefixes from the DDP wrappers in the saved state dicts
    assert not any(k.startswith("module.") for k in ckpt["networks"]["noisy_encoder"])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    assert start["world_size"] == 2
    # only rank 0 writes: one record per step
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2]
