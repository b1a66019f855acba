"""`restore --strength S` (issue 17, item 3): 0 = the input, 1 = the model, above 1 = stronger; the
model's correction scaled linearly (the bundled models are blind), on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from invrep_cli.backends import make_backend
from invrep_cli.cli import app
from invrep_cli.errors import UsageError
from invrep_cli.restore import RestoreConfig, restore_pixels

runner = CliRunner()
STRENGTHS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)



def _noisy(seed: int = 0, shape: tuple[int, ...] = (45, 67, 3), dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / 64
    clean = 0.5 + 0.3 * np.sin(5 * xx + 3 * yy)[..., None] * np.ones(shape[2])
    peak = np.iinfo(dtype).max
    return np.clip((clean + rng.normal(0, 0.1, shape)) * peak, 0, peak).round().astype(dtype)


@pytest.mark.parametrize("backend_name", ["torch", "onnx"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_zero_is_the_input_and_distance_grows_with_strength(
    weights: Path, onnx_file: Path, backend_name: str, dtype: type
) -> None:
    path = weights if backend_name == "torch" else onnx_file
    backend = make_backend(path, backend_name, "cpu", "fp32", threads=1)
    noisy = _noisy(dtype=dtype)
    distances = []
    for strength in STRENGTHS:
        out = restore_pixels(noisy, backend, tile=32, overlap=8, out_dtype=dtype, strength=strength)
        assert out.dtype == noisy.dtype and out.shape == noisy.shape
        if strength == 0.0:
            assert np.array_equal(out, noisy)  # exactly, through tiles and blending
        distances.append(float(np.abs(out.astype(np.int64) - noisy.astype(np.int64)).mean()))
    assert distances[0] == 0.0
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    # strength 1 is the model as it was before the option existed
    default = restore_pixels(noisy, backend, tile=32, overlap=8, out_dtype=dtype)
    assert np.array_equal(default, restore_pixels(noisy, backend, tile=32, overlap=8, out_dtype=dtype, strength=1.0))


def test_strength_is_linear_in_the_correction(weights: Path) -> None:
    backend = make_backend(weights, "torch", "cpu", "fp32", threads=1)
    x = _noisy().astype(np.float32) / 255
    full = restore_pixels(x, backend, tile=0)
    half = restore_pixels(x, backend, tile=0, strength=0.5)
    assert np.abs(half - (x + 0.5 * (full - x))).max() < 1e-5  # no clipping at 0.5: inside [0, 1]


@pytest.mark.parametrize("bad", ["-0.1", "4.5", "nan"])
def test_out_of_range_strength_is_a_usage_error(tmp_path: Path, weights: Path, bad: str) -> None:
    Image.fromarray(_noisy()).save(tmp_path / "a.png")
    result = runner.invoke(app, ["restore", str(tmp_path / "a.png"), str(tmp_path / "out"), "-w", str(weights),
                                 "--strength", bad])
    assert result.exit_code == 2 and "--strength" in result.stderr and "between 0" in result.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="--strength"):
        RestoreConfig(strength=float(bad))


@pytest.mark.parametrize("backend_name", ["torch", "onnx"])
def test_cli_records_strength_and_redoes_outputs_when_it_changes(
    tmp_path: Path, weights: Path, onnx_file: Path, backend_name: str
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_noisy()).save(src / "a.png")
    path = weights if backend_name == "torch" else onnx_file
    common = ["-w", str(path), "--device", "cpu", "--precision", "fp32", "--threads", "1", "--json"]

    def run(*extra: str) -> dict:
        result = runner.invoke(app, ["restore", str(src), str(out), *common, *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert run("--strength", "0")["strength"] == 0.0
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), _noisy())
    record = json.loads((out / ".invrep-restore.json").read_text())
    assert record["entries"]["a.png"]["settings"]["strength"] == 0.0
    # another strength changes the pixels, so the output is redone; the same one is skipped
    summary = run("--strength", "2")
    assert (summary["processed"], summary["strength"]) == (1, 2.0)
    assert run("--strength", "2")["skipped"] == 1
    # strength 1 is recorded as before the option existed (no key), so older records still match
    assert run()["processed"] == 1
    assert "strength" not in json.loads((out / ".invrep-restore.json").read_text())["entries"]["a.png"]["settings"]


def test_bench_scores_the_strength_restore_would_use(tmp_path: Path, weights: Path) -> None:
    """bench --strength: 0 scores exactly as the noisy input does, 1 as bench without the option; the
    JSON rows carry the strength; out-of-range values are refused as restore refuses them."""
    Image.fromarray(_noisy(1, (40, 40, 3))).save(tmp_path / "a.png")
    args = ["bench", str(tmp_path), "--sigma", "25", "-w", str(weights), "--backends", "torch",
            "--precisions", "fp32", "--device", "cpu", "--in-process", "--threads", "1", "--baselines", "noisy",
            "--json"]
    rows = {}
    for strength in ("0", "1", "0.5"):
        result = runner.invoke(app, [*args, "--strength", strength])
        assert result.exit_code == 0, result.output
        data = {r["method"]: r for r in json.loads(result.stdout)["rows"]}
        rows[strength] = data
        assert data["invrep"]["strength"] == float(strength)
    assert rows["0"]["invrep"]["psnr"] == pytest.approx(rows["0"]["noisy"]["psnr"], abs=1e-9)
    plain = json.loads(runner.invoke(app, args).stdout)["rows"]
    assert [r["psnr"] for r in plain if r["method"] == "invrep"] == [rows["1"]["invrep"]["psnr"]]
    assert len({rows[s]["invrep"]["psnr"] for s in rows}) == 3
    refused = runner.invoke(app, [*args, "--strength", "5"])
    assert refused.exit_code == 2 and "--strength" in refused.stderr


def test_outputs_carry_what_made_them_in_their_exif_software_tag(tmp_path: Path, weights: Path) -> None:
    """Item 3 of issue 17: the strength is in the output's metadata, with the weights that made it, in
    every format that holds EXIF; the input's own EXIF (here its Make) is kept beside it."""
    import tifffile

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "camera-make"
    Image.fromarray(_noisy()).save(src / "a.png", exif=exif)
    Image.fromarray(_noisy(1)).save(src / "b.jpg", quality=95)
    Image.fromarray(_noisy(2)).save(src / "c.bmp")
    tifffile.imwrite(src / "d.tif", _noisy(3, dtype=np.uint16), photometric="rgb")
    result = runner.invoke(app, ["restore", str(src), str(out), "-w", str(weights), "--device", "cpu",
                                 "--precision", "fp32", "--threads", "1", "--strength", "0.75", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["processed"] == 4 and not summary["notes"], summary["notes"]
    digest = summary["weights_sha256"][:12]
    for name in ("a.png", "b.jpg", "d.tif"):
        software = Image.open(out / name).getexif().get(0x0131)
        assert software and "strength 0.75" in software and digest in software and weights.name in software, name
    assert Image.open(out / "a.png").getexif().get(0x010F) == "camera-make"
    assert Image.open(out / "c.bmp").getexif().get(0x0131) is None  # BMP holds no EXIF, and no note is owed
