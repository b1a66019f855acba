"""OnnxBackend: provider policy, metadata, dtype handling, equality with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from invrep_cli.checkpoint import load_restorer
from invrep_cli.config import ModelConfig
from invrep_cli.errors import DeviceError, UsageError, WeightsError
from invrep_cli.export import export_onnx
from invrep_cli.onnx_backend import OnnxBackend, _cuda_driver_has_device, make_session


def test_backend_matches_torch(onnx_file: Path, weights: Path, tiny_config: ModelConfig) -> None:
    backend = OnnxBackend(onnx_file, device="cpu", threads=1)
    assert backend.name == "onnx" and backend.device == "CPUExecutionProvider" and backend.precision == "fp32"
    assert backend.size_multiple == tiny_config.size_multiple and backend.context_margin > 0
    x = np.random.default_rng(2).random((2, 3, 24, 40), dtype=np.float32)
    y = backend.run(x)
    restorer, _ = load_restorer(weights)
    with torch.no_grad():
        ref = restorer(torch.from_numpy(x)).numpy()
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - ref).max() < 1e-4


def test_backend_tiny_input_is_edge_padded(onnx_file: Path) -> None:
    backend = OnnxBackend(onnx_file, device="cpu", threads=1)
    y = backend.run(np.full((1, 3, 2, 3), 0.5, dtype=np.float32))
    assert y.shape == (1, 3, 2, 3) and np.isfinite(y).all() and 0.0 <= y.min() <= y.max() <= 1.0


def test_fp16_graph_reports_fp16(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.onnx"
    export_onnx(weights, out, fp16=True, check_sizes=((1, 3, 19, 21),), threads=1)
    backend = OnnxBackend(out, device="cpu", threads=1)
    assert backend.precision == "fp16"
    y = backend.run(np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32))
    assert y.dtype == np.float32 and np.isfinite(y).all()
    with pytest.raises(UsageError):
        OnnxBackend(out, device="cpu", precision="fp32")


def test_cuda_without_cuda_provider_is_an_error(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(DeviceError, match="no CUDA provider"):
        OnnxBackend(onnx_file, device="cuda")
    # auto falls back to CPU and says so
    assert OnnxBackend(onnx_file, device="auto", threads=1).device == "CPUExecutionProvider"


@pytest.mark.skipif(_cuda_driver_has_device(), reason="a CUDA GPU is present")
def test_cuda_without_gpu_is_an_error(onnx_file: Path) -> None:
    # onnxruntime-gpu lists the CUDA provider even without a GPU; it must not fall back silently
    with pytest.raises(DeviceError):
        make_session(onnx_file, "cuda", threads=1)


def test_session_errors(tmp_path: Path, onnx_file: Path) -> None:
    with pytest.raises(WeightsError):
        make_session(tmp_path / "missing.onnx", "cpu")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(WeightsError):
        make_session(garbage, "cpu")
    with pytest.raises(DeviceError):
        make_session(onnx_file, "tpu")


def test_threads_setting(onnx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session, provider = make_session(onnx_file, "cpu", threads=1)
    assert provider == "CPUExecutionProvider"
    assert session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    session, _ = make_session(onnx_file, "cpu")
    assert session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("tile", ["0", "64"])
def test_restore_cli_onnx_matches_torch(
    weights: Path, onnx_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tile: str
) -> None:
    pytest.importorskip("invrep_cli.restore")
    from PIL import Image
    from typer.testing import CliRunner

    from invrep_cli.cli import app
    from tests.conftest import write_images

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (source,) = write_images(tmp_path / "in", 1, size=(72, 100))
    runner = CliRunner()
    # fp32 on both sides: precision auto on a bf16 CPU would compare bf16 torch with the fp32 graph
    common = ["--device", "cpu", "--precision", "fp32", "--threads", "1", "--tile", tile, "--quiet"]
    outputs = {}
    for backend, file in (("torch", weights), ("onnx", onnx_file)):
        out = tmp_path / f"out_{backend}"
        args = ["restore", str(source.parent), str(out), "--backend", backend, "--weights", str(file), *common]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs[backend] = np.asarray(Image.open(out / source.name), dtype=np.int16)
    assert outputs["onnx"].shape == outputs["torch"].shape == (72, 100, 3)
    assert np.abs(outputs["onnx"] - outputs["torch"]).max() <= 1  # within 1/255
    assert outputs["onnx"].std() > 0  # a real image, not a constant fill


def test_restore_picks_the_backend_from_the_weights_file(weights: Path, onnx_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from invrep_cli.cli import app
    from tests.conftest import write_images

    write_images(tmp_path / "in", 1)
    runner = CliRunner()
    common = [str(tmp_path / "in"), "--device", "cpu", "--threads", "1", "--json"]
    result = runner.invoke(app, ["restore", *common[:1], str(tmp_path / "a"), "-w", str(onnx_file), *common[1:]])
    assert result.exit_code == 0, result.output
    assert '"backend": "onnx"' in result.stdout
    # --backend onnx with PyTorch weights: say what to do, not a protobuf parse error
    result = runner.invoke(app, ["restore", *common[:1], str(tmp_path / "b"), "-w", str(weights), "--backend", "onnx"])
    assert result.exit_code == 2
    assert "export it first" in result.stderr and "invrep export" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
