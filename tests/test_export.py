"""ONNX export: dynamic sizes, parity against PyTorch, metadata, fp16, the CLI's exit codes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from invrep_cli.checkpoint import load_restorer, save_restorer
from invrep_cli.config import ModelConfig
from invrep_cli.errors import ExportError, UsageError
from invrep_cli.export import FP32_TOLERANCE, check_parity, export_onnx
from invrep_cli.fsutil import current_umask
from invrep_cli.models import build_restorer, receptive_field

ODD_SIZES = ((1, 3, 17, 23), (2, 3, 37, 53))


@pytest.fixture
def weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    torch.manual_seed(0)
    return save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")


@pytest.fixture
def exported(weights: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "model.onnx"
    (tmp_path / ".model.k1lled0x.onnx.part").write_bytes(b"half a graph")  # what a kill -9 leaves
    return out, export_onnx(weights, out, check_sizes=ODD_SIZES, threads=1)


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_export_parity_at_odd_sizes(exported: tuple[Path, dict], weights: Path) -> None:
    out, report = exported
    assert out.is_file() and report["path"] == str(out)
    assert report["opset"] == 17 and report["fp16"] is False and report["provider"] == "CPUExecutionProvider"
    assert report["file_size"] == out.stat().st_size
    restorer, _ = load_restorer(weights)
    rng = np.random.default_rng(0)  # check_parity's inputs, rebuilt here to recompute its numbers
    for size, check in zip(ODD_SIZES, report["checks"], strict=True):
        assert check["size"] == list(size)
        x = rng.random(size, dtype=np.float32)
        with torch.no_grad():
            ref = restorer(torch.from_numpy(x)).numpy()
        diff = float(np.abs(_ort_run(out, x) - ref).max())
        assert check["max_abs_diff"] == pytest.approx(diff, abs=1e-7)
        assert 0.0 < check["max_abs_diff"] < FP32_TOLERANCE
        assert report["max_abs_diff"]["x".join(map(str, size))] == check["max_abs_diff"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_graph_has_normal_permissions_and_no_leftovers(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~current_umask()  # not mkstemp's 0600
    assert [p.name for p in out.parent.glob(".*.part")] == []


def test_metadata_embedded(exported: tuple[Path, dict], weights: Path, tiny_config: ModelConfig) -> None:
    out, _ = exported
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert ModelConfig.from_dict(json.loads(props["model_config"])) == tiny_config
    assert props["input_range"] == "[0,1]"
    assert int(props["size_multiple"]) == tiny_config.size_multiple
    margin = int(props["context_margin"])
    assert margin % tiny_config.size_multiple == 0 and margin >= receptive_field(tiny_config) / 2
    assert props["weights_sha256"] == load_restorer(weights)[1]["sha256"]
    assert props["precision"] == "fp32" and props["invrep_version"]


def test_graph_is_dynamic_beyond_check_sizes(exported: tuple[Path, dict], weights: Path) -> None:
    out, _ = exported
    model = onnx.load(str(out))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    x = np.random.default_rng(5).random((3, 3, 29, 71), dtype=np.float32)  # no check or trace size
    y = _ort_run(out, x)
    restorer, _ = load_restorer(weights)
    with torch.no_grad():
        ref = restorer(torch.from_numpy(x)).numpy()
    assert y.shape == x.shape and np.abs(y - ref).max() < FP32_TOLERANCE


def test_tampered_graph_fails_parity(exported: tuple[Path, dict], weights: Path, tmp_path: Path) -> None:
    out, _ = exported
    model = onnx.load(str(out))
    conv_weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    target = conv_weights[0]
    array = numpy_helper.to_array(target).copy()
    array.flat[0] += 1.0
    target.CopyFrom(numpy_helper.from_array(array, target.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    restorer, _ = load_restorer(weights)
    result = check_parity(broken, restorer, ODD_SIZES, threads=1)
    assert not result["passed"] and result["skipped"] is None
    assert max(r["max_abs_diff"] for r in result["results"]) > FP32_TOLERANCE
    assert check_parity(out, restorer, ODD_SIZES, threads=1)["passed"]


def test_failed_parity_keeps_no_file(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "strict.onnx"
    # ORT and PyTorch never agree to the last bit through these convolutions, so 0 cannot pass
    with pytest.raises(ExportError, match="differs from PyTorch") as info:
        export_onnx(weights, out, check_sizes=ODD_SIZES[:1], tol=0.0, threads=1)
    assert not out.exists() and not list(tmp_path.glob(".strict*"))
    assert info.value.report["checks"][0]["max_abs_diff"] > 0.0  # type: ignore[attr-defined]


def test_fp16_export_is_really_fp16(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "half.onnx"
    report = export_onnx(weights, out, fp16=True, check_sizes=ODD_SIZES[:1], threads=1)
    model = onnx.load(str(out))
    conv_weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert conv_weights and all(i.data_type == TensorProto.FLOAT16 for i in conv_weights)
    # no float32 tensor beyond Resize's 4 scales: the weights were not kept in fp32
    assert all(i.data_type != TensorProto.FLOAT or np.prod(i.dims) <= 4 for i in model.graph.initializer)
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"
    if report["parity_skipped"] is None:
        diff = report["checks"][0]["max_abs_diff"]
        assert FP32_TOLERANCE < diff < report["tolerance"]  # fp16 rounding shows, within tolerance
    else:
        assert report["provider"] is None and report["parity_skipped"]


def test_dynamo_exporter_at_opset_18(weights: Path, tmp_path: Path) -> None:
    report = export_onnx(weights, tmp_path / "d.onnx", opset=18, check_sizes=ODD_SIZES[:1], threads=1)
    assert report["exporter"] == "dynamo" and report["opset"] == 18
    assert report["checks"][0]["max_abs_diff"] < FP32_TOLERANCE


def test_bad_options(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        export_onnx(weights, tmp_path / "x.onnx", check_sizes=((1, 3, 3, 3),))
    with pytest.raises(UsageError):
        export_onnx(weights, tmp_path / "x.txt")


def test_cli_export_exit_codes(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from invrep_cli.cli import app

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    result = runner.invoke(app, ["export", "--weights", str(weights), "--onnx", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["path"] == str(out) and out.is_file()
    assert all(c["ok"] for c in report["checks"]) and len(report["checks"]) == 3

    missing = runner.invoke(app, ["export", "--weights", str(tmp_path / "nope.safetensors"), "--onnx", str(out)])
    assert missing.exit_code == 2
    bad_opset = runner.invoke(app, ["export", "--weights", str(weights), "--onnx", str(out), "--opset", "9"])
    assert bad_opset.exit_code == 2
    failing = runner.invoke(
        app, ["export", "--weights", str(weights), "--onnx", str(tmp_path / "f.onnx"), "--tolerance", "0", "--json"]
    )
    assert failing.exit_code == 1 and not (tmp_path / "f.onnx").exists()
    assert "differs from PyTorch" in json.loads(failing.stdout)["error"]
