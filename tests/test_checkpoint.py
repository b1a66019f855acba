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


def test_average_weights_script_means_every_tensor_and_refuses_other_shapes(tmp_path: Path) -> None:
    """benchmarks/average_weights.py: each tensor of the output is the inputs' (weighted) mean; a G_X-only
    config difference (not in a restorer file) is allowed, another width is refused."""
    import dataclasses
    import importlib.util

    from invrep_cli.checkpoint import load_restorer, save_restorer
    from invrep_cli.config import ModelConfig
    from invrep_cli.models import build_restorer

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "average_weights.py"
    spec = importlib.util.spec_from_file_location("average_weights", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    tiny = ModelConfig(name="tiny-unet", width=4, n_res_blocks=1, skips=2, up_kernel=3, residual=True)
    paths = []
    for seed, config in enumerate((tiny, dataclasses.replace(tiny, gx_up_kernel=5))):
        torch.manual_seed(seed)
        paths.append(save_restorer(build_restorer(config), tmp_path / f"w{seed}.safetensors",
                                   {"stage": "1", "noise_model": f"fit {seed}"}))
    out = tmp_path / "soup.safetensors"
    soup, meta = module.average(paths)
    save_restorer(soup, out, meta)
    loaded, stored = load_restorer(out)
    a, b = (load_restorer(p)[0].state_dict() for p in paths)
    for key, value in loaded.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2)
        else:  # an integer buffer (a count), the same in both, is copied
            assert torch.equal(value, a[key])
    assert [s["sha256"] for s in stored["averaged_from"]] == [load_restorer(p)[1]["sha256"] for p in paths]
    assert stored["stage"] == 1 and "noise_model" not in stored  # kept only where the inputs agree

    blend, meta = module.average(paths, [0.75, 0.25])
    for key, value in blend.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[key] + 0.25 * b[key])
    assert [s["weight"] for s in meta["averaged_from"]] == [0.75, 0.25]
    with pytest.raises(SystemExit, match="summing to 1"):
        module.average(paths, [0.5, 0.6])

    torch.manual_seed(2)
    wider = save_restorer(build_restorer(dataclasses.replace(tiny, width=8)), tmp_path / "wide.safetensors")
    with pytest.raises(SystemExit, match="different network shapes"):
        module.average([paths[0], wider])
