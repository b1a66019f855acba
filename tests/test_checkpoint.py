"""Weights files a user can trust: corrupted data is caught, pickles are refused in one line."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from invrep_cli.checkpoint import TENSORS_DIGEST_KEY, load_restorer, save_restorer
from invrep_cli.cli import app
from invrep_cli.config import ModelConfig
from invrep_cli.errors import WeightsError
from invrep_cli.models import build_restorer
from tests.conftest import write_images

runner = CliRunner()


def _header(path: Path) -> tuple[int, dict]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return 8 + length, json.loads(data[8 : 8 + length])


def test_corrupted_tensor_bytes_are_refused_exit_2(tmp_path: Path, tiny_config: ModelConfig) -> None:
    weights = save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")
    start, header = _header(weights)
    assert len(header["__metadata__"][TENSORS_DIGEST_KEY]) == 64
    data = bytearray(weights.read_bytes())
    for i in range(start + 100, start + 164):  # header intact, some weights flipped
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        load_restorer(weights)
    write_images(tmp_path / "in", 1)
    result = runner.invoke(app, ["restore", str(tmp_path / "in"), str(tmp_path / "out"), "-w", str(weights)])
    assert result.exit_code == 2 and "corrupt" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


def test_files_saved_without_a_digest_still_load(tmp_path: Path, tiny_config: ModelConfig) -> None:
    from safetensors.torch import save_file

    restorer = build_restorer(tiny_config)
    weights = save_restorer(restorer, tmp_path / "new.safetensors")
    _, header = _header(weights)
    meta = {k: v for k, v in header["__metadata__"].items() if k != TENSORS_DIGEST_KEY}
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in restorer.state_dict().items()}, str(old), metadata=meta)
    loaded, _ = load_restorer(old)
    expected = restorer.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


class _Payload:
    """Any class outside PyTorch's allow-list: what a pickled (possibly malicious) .pt holds."""


def test_pickled_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"format": "invrep-train-checkpoint/1", "payload": _Payload()}, path)
    with pytest.raises(WeightsError, match="not a safe invrep checkpoint"):
        load_restorer(path)
    write_images(tmp_path / "in", 1)
    result = runner.invoke(app, ["restore", str(tmp_path / "in"), str(tmp_path / "out"), "-w", str(path)])
    assert result.exit_code == 2
    assert "not a safe invrep checkpoint" in result.stderr and "weights_only" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
