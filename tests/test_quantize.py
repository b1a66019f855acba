"""int8 export (static QDQ quantization calibrated on a folder), restore through it, and --threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from invrep_cli.checkpoint import save_restorer
from invrep_cli.cli import app
from invrep_cli.config import ModelConfig
from invrep_cli.models import build_restorer
from invrep_cli.quantize import Calibration, psnr_against, random_crops
from tests.conftest import write_images

runner = CliRunner()


@pytest.fixture
def weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    torch.manual_seed(0)
    return save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")


@pytest.fixture
def calibration_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "calibration"
    write_images(folder, 3, seed=1)
    write_images(folder / "gray", 1, seed=2, mode="L")  # gray is replicated to RGB, as restore does
    return folder


def _export_int8(weights: Path, calibration_dir: Path, out: Path, *extra: str) -> tuple[int, dict]:
    args = ["export", "--weights", str(weights), "--onnx", str(out), "--int8", "--calibrate", str(calibration_dir),
            "--calibration-crops", "6", "--calibration-size", "24", "--calibration-sigma", "25", "--threads", "1"]
    result = runner.invoke(app, [*args, *extra, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def int8_graph(weights: Path, calibration_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "int8.onnx"
    code, report = _export_int8(weights, calibration_dir, out, "--min-psnr", "20")
    assert code == 0, report
    return out, report


def test_int8_graph_says_so_and_reports_psnr_against_fp32(int8_graph: tuple[Path, dict]) -> None:
    out, report = int8_graph
    assert report["precision"] == "int8" and out.is_file()
    assert all(c["ok"] for c in report["checks"])  # the fp32 graph it came from matched PyTorch
    parity = report["int8_parity"]
    assert parity["inputs"] == 8 and parity["size"] == [1, 3, 21, 29] and parity["finite"]
    assert 20 < parity["psnr_db"] < 200 and parity["min_psnr_db"] <= parity["psnr_db"]

    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8"
    quantization = json.loads(props["quantization"])
    assert quantization["format"] == "QDQ" and "per channel" in quantization["weights"]
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    assert quantization["fp32_convs"][-1] == convs[-1]  # the output conv stays fp32
    calibration = quantization["calibration"]
    assert calibration["folder"] == "calibration" and calibration["files"] == 4 and calibration["crops_used"] == 6
    assert calibration["sigma"] == 25 and len(calibration["files_sha256"]) == 64
    assert json.loads(props["int8_parity"])["psnr_db"] == pytest.approx(parity["psnr_db"])
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4


def test_human_export_prints_the_int8_psnr(weights: Path, calibration_dir: Path, tmp_path: Path) -> None:
    args = ["export", "--weights", str(weights), "--onnx", str(tmp_path / "h.onnx"), "--int8", "--calibrate",
            str(calibration_dir), "--calibration-crops", "2", "--calibration-size", "24", "--min-psnr", "20"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "int8 vs fp32 graph:" in result.stdout and "dB PSNR" in result.stdout and "int8" in result.stdout


def test_int8_under_min_psnr_keeps_no_file(weights: Path, calibration_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "strict.onnx"
    code, report = _export_int8(weights, calibration_dir, out, "--min-psnr", "500")
    assert code == 1 and not out.exists()
    assert "fp32 graph" in report["error"] and report["int8_parity"]["psnr_db"] < 500


def test_int8_options(weights: Path, calibration_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    base = ["export", "--weights", str(weights), "--onnx", str(out)]
    assert runner.invoke(app, [*base, "--int8"]).exit_code == 2  # no calibration folder
    assert runner.invoke(app, [*base, "--calibrate", str(calibration_dir)]).exit_code == 2  # no --int8
    both = runner.invoke(app, [*base, "--int8", "--fp16", "--calibrate", str(calibration_dir)])
    assert both.exit_code == 2 and "exclude" in both.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, [*base, "--int8", "--calibrate", str(empty)]).exit_code == 2
    assert not out.exists()


def test_random_crops_and_psnr_helpers(calibration_dir: Path) -> None:
    files = sorted(calibration_dir.rglob("*.png"))
    crops = random_crops(files, 5, (16, 20), sigma=0.0, seed=3)
    assert len(crops) == 5 and all(c.shape == (1, 3, 16, 20) and c.dtype == np.float32 for c in crops)
    assert [c.tolist() for c in crops] == [c.tolist() for c in random_crops(files, 5, (16, 20), 0.0, 3)]
    noisy = random_crops(files, 5, (16, 20), sigma=25.0, seed=3)
    assert 0.0 <= min(c.min() for c in noisy) and max(c.max() for c in noisy) <= 1.0
    report = psnr_against(crops, [c + 0.01 for c in crops])
    assert report["psnr_db"] == pytest.approx(40.0, abs=1e-3)
    assert report["max_abs_diff"] == pytest.approx(0.01, abs=1e-6)
    assert Calibration("x").crops == 64


def test_restore_with_the_int8_graph_in_tiles(int8_graph: tuple[Path, dict], tmp_path: Path) -> None:
    from invrep_cli.backends import make_backend
    from invrep_cli.restore import restore_pixels

    out, _ = int8_graph
    backend = make_backend(out, backend="onnx", device="cpu", threads=1)
    assert backend.precision == "int8"
    image = np.random.default_rng(0).random((141, 157, 3), dtype=np.float32)
    whole = restore_pixels(image, backend, tile=0)
    tiled = restore_pixels(image, backend, tile=64, overlap=16)
    assert tiled.shape == image.shape and np.isfinite(tiled).all()
    # static int8 ranges are fixed, so a tile's centre sees what the whole image does
    assert np.abs(tiled - whole).max() < 2 / 255

    (source,) = write_images(tmp_path / "in", 1, size=(100, 140))
    args = ["restore", str(source.parent), str(tmp_path / "out"), "--backend", "onnx", "--weights", str(out),
            "--device", "cpu", "--tile", "64", "--threads", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["precision"] == "int8" and summary["processed"] == 1 and (tmp_path / "out" / source.name).is_file()
    wrong = runner.invoke(app, [*args[:-1], "--precision", "fp32"])
    assert wrong.exit_code == 2 and "int8 graph" in wrong.stderr


def test_threads_are_honoured(weights: Path, int8_graph: tuple[Path, dict], tmp_path: Path) -> None:
    from invrep_cli.backends import make_backend

    before = torch.get_num_threads()
    try:
        torch_backend = make_backend(weights, device="cpu", threads=1)
        assert torch.get_num_threads() == 1 and torch_backend.device == "cpu (1 threads)"
        onnx_backend = make_backend(int8_graph[0], backend="onnx", device="cpu", threads=1)
        assert onnx_backend.session.get_session_options().intra_op_num_threads == 1
        (source,) = write_images(tmp_path / "in", 1)
        result = runner.invoke(app, ["restore", str(source), str(tmp_path / "o.png"), "--weights", str(weights),
                                     "--device", "cpu", "--threads", "1", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["device"] == "cpu (1 threads)"
        assert runner.invoke(app, ["restore", str(source), str(tmp_path / "p.png"), "--threads", "0"]).exit_code == 2
    finally:
        torch.set_num_threads(before)
