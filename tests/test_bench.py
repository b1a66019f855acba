"""invrep bench: seeded 8-bit noise, skimage metrics, the rows of the table, skipped rows, the cost model."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from invrep_cli.baselines import nlm_h
from invrep_cli.bench import BenchConfig, BenchResult, BenchRow, plan_model_rows, restorer_macs_per_pixel, run_bench
from invrep_cli.config import ModelConfig, model_preset
from invrep_cli.synthetic import add_noise, load_clean_images, noise_seed
from tests.conftest import write_images


def test_noise_is_seeded_quantised_and_has_the_asked_sigma() -> None:
    clean = np.full((64, 64, 3), 128, dtype=np.uint8)
    a = add_noise(clean, 25, noise_seed(0, 0, 25))
    b = add_noise(clean, 25, noise_seed(0, 0, 25))
    other_image = add_noise(clean, 25, noise_seed(0, 1, 25))
    other_seed = add_noise(clean, 25, noise_seed(1, 0, 25))
    assert a.dtype == np.uint8 and a.shape == clean.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, other_image) and not np.array_equal(a, other_seed)
    # the formula, computed here independently
    rng = np.random.default_rng(noise_seed(0, 0, 25))
    expected = np.clip(np.rint(128.0 + rng.normal(0.0, 25.0, clean.shape)), 0, 255).astype(np.uint8)
    assert np.array_equal(a, expected)
    assert abs(float(a.astype(np.float64).std()) - 25.0) < 1.0
    # clipping at the ends of the range, as a saved file would be
    white = add_noise(np.full((32, 32), 250, dtype=np.uint8), 50, 3)
    assert white.max() == 255 and (white == 255).mean() > 0.3


def test_noisy_row_psnr_matches_skimage(tmp_path: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    write_images(tmp_path / "clean", 2, size=(32, 32), seed=3)
    cfg = BenchConfig(clean_dir=str(tmp_path / "clean"), sigmas=(15, 50), backends=(), baselines=("noisy",),
                      seed=7, isolate=False)
    result = run_bench(cfg)
    assert [(r.method, r.sigma) for r in result.rows] == [("noisy", 15.0), ("noisy", 50.0)]
    cleans = [a for _, a in load_clean_images(tmp_path / "clean")[0]]
    for row in result.rows:
        noisy = [add_noise(c, row.sigma, noise_seed(7, i, row.sigma)) for i, c in enumerate(cleans)]
        psnr = np.mean([peak_signal_noise_ratio(c, n, data_range=255) for c, n in zip(cleans, noisy, strict=True)])
        ssim = np.mean([structural_similarity(c, n, data_range=255, channel_axis=-1)
                        for c, n in zip(cleans, noisy, strict=True)])
        assert row.psnr == pytest.approx(psnr, abs=1e-9)
        assert row.ssim == pytest.approx(ssim, abs=1e-9)
        assert row.mp_per_s is None and row.skipped is None
    # more noise, lower PSNR; sigma 15 on 8-bit is about 24.6 dB before clipping
    assert result.rows[0].psnr > result.rows[1].psnr
    assert 23.0 < result.rows[0].psnr < 26.0


def test_nlm_improves_on_noise_gray_and_in_a_subprocess(tmp_path: Path) -> None:
    write_images(tmp_path / "clean", 2, size=(48, 48), seed=1, mode="L")
    cfg = BenchConfig(clean_dir=str(tmp_path / "clean"), sigmas=(25,), backends=(), baselines=("noisy", "nlm"),
                      isolate=False, save_dir=str(tmp_path / "saved"))
    rows = {r.method: r for r in run_bench(cfg).rows}
    assert rows["nlm"].psnr > rows["noisy"].psnr + 2.0
    assert rows["nlm"].mp_per_s and rows["nlm"].mp_per_s > 0
    assert rows["nlm"].detail["h_gray"]["25"] == pytest.approx(nlm_h(25, gray=True), abs=0.01)
    assert (tmp_path / "saved" / "sigma25" / "noisy" / "000.png").is_file()
    assert (tmp_path / "saved" / "sigma25" / "nlm-opencv-cpu-fp32" / "001.png").is_file()
    # the same job in a fresh spawn subprocess: same images, a peak memory measured there
    isolated = run_bench(BenchConfig(clean_dir=str(tmp_path / "clean"), sigmas=(25,), backends=(),
                                     baselines=("nlm",), isolate=True))
    row = isolated.rows[0]
    assert row.failed is None, row.failed
    assert row.detail["pid"] != os.getpid() and rows["nlm"].detail["pid"] == os.getpid()
    assert row.psnr == pytest.approx(rows["nlm"].psnr, abs=1e-9)
    assert row.peak_memory_mb is not None and row.memory_method


def test_unavailable_precisions_are_skipped_rows_with_a_reason() -> None:
    specs = plan_model_rows(["torch", "onnx"], ["fp32", "fp16"], "cpu", cuda_available=False,
                            providers=["CPUExecutionProvider"])
    table = {(s.backend, s.device, s.precision): s.skipped for s in specs}
    assert table[("torch", "cpu", "fp32")] is None and table[("onnx", "cpu", "fp32")] is None
    assert "CPU" in table[("torch", "cpu", "fp16")] and "CPU" in table[("onnx", "cpu", "fp16")]
    auto_gpu = plan_model_rows(["torch"], ["auto"], "auto", cuda_available=True, providers=[])
    assert [(s.device, s.precision) for s in auto_gpu] == [("cpu", "fp32"), ("cpu", "bf16"), ("cuda", "fp32"),
                                                            ("cuda", "fp16"), ("cuda", "bf16")]
    auto_cpu = plan_model_rows(["torch", "onnx"], ["auto"], "cpu", cuda_available=False, providers=[],
                               cpu_bf16_unsupported="no bf16 instructions")
    table = {(s.backend, s.precision): s.skipped for s in auto_cpu}
    assert list(table) == [("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")]
    assert "no bf16 instructions" in table[("torch", "bf16")] and table[("onnx", "int8")] is None
    wrong = plan_model_rows(["torch", "onnx"], ["int8", "bf16"], "cpu", cuda_available=False, providers=[])
    table = {(s.backend, s.precision): s.skipped for s in wrong}
    assert "ONNX Runtime" in table[("torch", "int8")] and table[("torch", "bf16")] is None
    assert "bf16" in table[("onnx", "bf16")] and table[("onnx", "int8")] is None
    no_provider = plan_model_rows(["onnx"], ["auto"], "cuda", cuda_available=True, providers=["CPUExecutionProvider"])
    assert all("CUDAExecutionProvider" in (s.skipped or "") for s in no_provider)


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.models.restorer import Restorer

    return save_restorer(Restorer(tiny_config).eval(), tmp_path / "w.safetensors")


def test_cli_table_rows_and_json(tmp_path: Path, tiny_weights: Path) -> None:
    from invrep_cli.cli import app

    write_images(tmp_path / "clean", 2, size=(32, 32), seed=5)
    args = ["bench", str(tmp_path / "clean"), "--sigma", "25", "--weights", str(tiny_weights),
            "--backends", "torch,onnx", "--precisions", "fp32,fp16", "--device", "cpu", "--in-process",
            "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {(r["method"], r["backend"], r["precision"]): r for r in data["rows"]}
    assert ("noisy", "-", "-") in rows and ("nlm", "opencv", "fp32") in rows
    torch_row = rows[("invrep", "torch", "fp32")]
    assert torch_row["skipped"] is None and torch_row["failed"] is None
    assert torch_row["device"].startswith("cpu")
    assert math.isfinite(torch_row["psnr"]) and 0 < torch_row["ssim"] <= 1 and torch_row["mp_per_s"] > 0
    assert torch_row["peak_memory_mb"] is not None
    assert torch_row["weights"] == "w" and len(torch_row["weights_sha256"]) == 12
    fp16 = rows[("invrep", "torch", "fp16")]
    assert fp16["skipped"] and "CPU" in fp16["skipped"] and fp16["psnr"] is None
    onnx_row = rows[("invrep", "onnx", "fp32")]
    assert onnx_row["failed"] is None
    if importlib.util.find_spec("invrep_cli.export") and importlib.util.find_spec("onnxruntime"):
        assert onnx_row["skipped"] is None and "CPU" in onnx_row["device"]
        # the same network through ONNX Runtime scores the same as through torch
        assert onnx_row["psnr"] == pytest.approx(torch_row["psnr"], abs=0.05)
    else:
        assert onnx_row["skipped"]
    assert data["machine"]["torch"] and data["images"][0]["width"] == 32
    # the table form names the same rows
    table = CliRunner().invoke(app, args, env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    for word in ("noisy", "nlm", "torch", "onnx", "skipped"):
        assert word in table.stdout


def test_bad_options_exit_2(tmp_path: Path) -> None:
    from invrep_cli.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["bench", str(tmp_path / "missing"), "--backends", ""]).exit_code == 2
    write_images(tmp_path / "clean", 1)
    assert runner.invoke(app, ["bench", str(tmp_path / "clean"), "--sigma", "x", "--backends", ""]).exit_code == 2
    assert runner.invoke(app, ["bench", str(tmp_path / "clean"), "--baselines", "foo", "--backends", ""]).exit_code == 2


def _macs_by_hand(cfg: ModelConfig) -> float:
    """Closed form of the restorer's conv multiply-adds per pixel, to check the hook counter."""
    w, n = cfg.width, cfg.n_downsample
    macs = 49 * cfg.image_channels * w
    ch, area = w, 1.0
    for _ in range(n):
        area /= 4
        macs += 16 * ch * (2 * ch) * area
        ch *= 2
    macs += 2 * cfg.n_res_blocks * 2 * 9 * ch * ch * area  # encoder and decoder residual blocks
    k = cfg.up_kernel
    for level in reversed(range(n)):
        area *= 4
        macs += k * k * ch * (ch // 2) * area
        ch //= 2
        if level < cfg.skips:  # skip connection: concat the encoder's features, fuse with a 3x3 conv
            macs += 9 * (2 * ch) * ch * area
    out_kernel = 7 if cfg.skips == 0 else 3
    return macs + out_kernel * out_kernel * ch * cfg.image_channels


def test_restorer_macs_per_pixel(tiny_config: ModelConfig) -> None:
    lir = restorer_macs_per_pixel("lir")
    assert lir == pytest.approx(1.08e6, rel=0.02)
    assert lir == pytest.approx(_macs_by_hand(model_preset("lir")))
    assert restorer_macs_per_pixel(tiny_config) == pytest.approx(_macs_by_hand(tiny_config))
    assert restorer_macs_per_pixel("lir-lite") == pytest.approx(_macs_by_hand(model_preset("lir-lite")))
    unet = restorer_macs_per_pixel("lir-lite-unet")
    assert unet == pytest.approx(_macs_by_hand(model_preset("lir-lite-unet")))
    assert unet < restorer_macs_per_pixel("lir-lite")  # the full-resolution path costs less, not more


def test_missing_bm3d_is_a_skipped_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from invrep_cli.cli import app

    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    write_images(tmp_path / "clean", 1, size=(32, 32))
    result = CliRunner().invoke(app, ["bench", str(tmp_path / "clean"), "--sigma", "25", "--backends", "",
                                      "--baselines", "noisy,bm3d", "--in-process"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stdout and "invrep[bm3d]" in result.stdout


def test_cli_precision_rows_fp32_bf16_int8(tmp_path: Path, tiny_config: ModelConfig) -> None:
    import torch

    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.cli import app
    from invrep_cli.devices import cpu_bf16_unsupported
    from invrep_cli.models.restorer import Restorer

    torch.manual_seed(0)  # a random tiny net's int8 parity varies with its weights: keep one
    tiny_weights = save_restorer(Restorer(tiny_config).eval(), tmp_path / "w.safetensors")
    write_images(tmp_path / "clean", 2, size=(32, 32), seed=5)
    write_images(tmp_path / "calibration", 2, size=(32, 32), seed=6)
    args = ["bench", str(tmp_path / "clean"), "--sigma", "25", "--weights", str(tiny_weights), "--baselines", "noisy",
            "--backends", "torch,onnx", "--precisions", "fp32,bf16,int8", "--device", "cpu", "--in-process",
            "--threads", "1", "--calibrate", str(tmp_path / "calibration"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {(r["backend"], r["precision"]): r for r in json.loads(result.stdout)["rows"] if r["method"] == "invrep"}
    assert "ONNX Runtime" in rows[("torch", "int8")]["skipped"] and rows[("onnx", "bf16")]["skipped"]
    ran = [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]
    assert math.isfinite(rows[("onnx", "int8")]["detail"]["int8_parity"]["psnr_db"])
    if cpu_bf16_unsupported():
        assert "bf16" in rows[("torch", "bf16")]["skipped"]
    else:
        ran.append(("torch", "bf16"))
    for key in ran:
        row = rows[key]
        assert row["skipped"] is None and row["failed"] is None, (key, row)
        assert row["precision"] == key[1] and row["mp_per_s"] > 0 and row["peak_memory_mb"] is not None
        assert math.isfinite(row["psnr"])
        # reduced precision moves PSNR against the clean image by a fraction of a dB on a tiny net
        assert abs(row["psnr"] - rows[(key[0], "fp32")]["psnr"]) < 1.0


def _long_result() -> BenchResult:
    row = BenchRow(method="invrep", sigma=25.0, backend="onnx", device="cpu (ORT CPU)", precision="fp32",
                   weights="lir-lite-gauss", weights_sha256="0123456789ab", tile=512, mp_per_s=1.234, psnr=30.12,
                   ssim=0.8765, skipped="a long reason that names a path /some/where/long/enough/to/matter.onnx")
    return BenchResult(rows=[row, dataclasses.replace(row, sigma=50.0)], machine={}, config={},
                       images=[{"name": "astronaut", "width": 512, "height": 512}])


def test_table_piped_or_narrow_is_never_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from invrep_cli.cli import bench as cli_bench

    piped = Console(file=io.StringIO(), width=80)  # not a terminal: plain columns, whole cells
    monkeypatch.setattr(cli_bench, "console", piped)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    cli_bench._render(_long_result())
    text = sys.stdout.getvalue()
    assert "…" not in text and "lir-lite-gauss 0123456789ab" in text and "enough/to/matter.onnx" in text
    assert text.splitlines()[1].split() == ["sigma", "method", "weights", "backend", "device", "precision", "tile",
                                            "MP/s", "peak", "MB", "PSNR", "SSIM", "note"]
    narrow = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(cli_bench, "console", narrow)
    cli_bench._render(_long_result())
    shown = narrow.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in shown and "weig" in shown and max(len(line) for line in shown.splitlines()) <= 80


def test_clean_images_over_the_pixel_limit_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invrep_cli import imageio

    write_images(tmp_path / "clean", 1, size=(32, 32))
    write_images(tmp_path / "clean" / "big", 1, size=(64, 64))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 40 * 40)
    images, notes = load_clean_images(tmp_path / "clean")
    assert [name for name, _ in images] == ["img_000.png"]
    assert "over the 0.0016 MP decompression-bomb limit" in notes[0]


def test_a_row_subprocess_does_not_outlive_bench() -> None:
    """The watcher every row's subprocess starts: once its parent is gone (here: a pid that is not
    its parent) it exits instead of running on, orphaned."""
    import subprocess
    import sys
    import time

    code = "import time\nfrom invrep_cli.bench import exit_with_parent\nexit_with_parent(-1, 0.05)\ntime.sleep(30)\n"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], timeout=25)
    assert proc.returncode == 1 and time.monotonic() - start < 20


def test_sigma_zero_scores_clean_images_as_they_are(tmp_path: Path) -> None:
    """--sigma 0: the input is the clean image, so the noisy row is identical to its reference (a
    finite MAX_PSNR, since JSON has no infinity) and NLM leaves it as it is; negative sigmas refused."""
    from invrep_cli.errors import UsageError
    from invrep_cli.synthetic import MAX_PSNR

    write_images(tmp_path / "clean", 2, size=(32, 32), seed=3)
    cfg = BenchConfig(clean_dir=str(tmp_path / "clean"), sigmas=(0, 25), backends=(), baselines=("noisy", "nlm"),
                      isolate=False)
    rows = {(r.method, r.sigma): r for r in run_bench(cfg).rows}
    assert rows[("noisy", 0.0)].psnr == MAX_PSNR and rows[("noisy", 0.0)].ssim == pytest.approx(1.0)
    assert rows[("noisy", 25.0)].psnr < 35
    with pytest.raises(UsageError):
        run_bench(dataclasses.replace(cfg, sigmas=(-1.0,)))
