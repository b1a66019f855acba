"""`restore --self-ensemble N`: the restorer averaged over N of the 8 flips and quarter turns of each tile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from invrep_cli.backends import make_backend
from invrep_cli.cli import app
from invrep_cli.ensemble import ORIENTATIONS, self_ensemble
from invrep_cli.restore import restore_pixels

runner = CliRunner()


def _noisy(seed: int = 0, shape: tuple[int, ...] = (45, 67, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / 64
    clean = 0.5 + 0.3 * np.sin(5 * xx + 3 * yy)[..., None] * np.ones(shape[2])
    return np.clip((clean + rng.normal(0, 0.1, shape)) * 255, 0, 255).round().astype(np.uint8)


def test_each_orientation_is_undone_before_averaging() -> None:
    """On a non-square batch: a function that commutes with every flip and turn comes back unchanged
    (so each output was turned back to the input's orientation), and one that does not (a shift to
    the right) comes back as the mean of its 8 turned versions, a shift in each of 4 directions."""
    rng = np.random.default_rng(1)
    batch = rng.random((2, 3, 8, 12), dtype=np.float32)
    calls = []

    def identity(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return x.copy()

    assert np.allclose(self_ensemble(identity, batch), batch, rtol=0, atol=1e-6)
    assert sorted(set(calls)) == [(2, 3, 8, 12), (2, 3, 12, 8)] and len(calls) == 8

    def shift_right(x: np.ndarray) -> np.ndarray:
        return np.roll(x, 1, axis=3)

    expected = sum(np.roll(batch, s, axis=a) for a in (2, 3) for s in (1, -1)) / 4
    assert np.allclose(self_ensemble(shift_right, batch), expected, atol=1e-6)


def test_cheaper_sizes_are_nested_and_each_undone() -> None:
    """2 is the half turn, 4 the quarter turns: a shift right comes back as the mean of a shift right
    and left (2), and of a shift in each of 4 directions (4); each size holds the smaller one."""
    rng = np.random.default_rng(2)
    batch = rng.random((1, 3, 6, 10), dtype=np.float32)

    def shift_right(x: np.ndarray) -> np.ndarray:
        return np.roll(x, 1, axis=3)

    lr = (np.roll(batch, 1, axis=3) + np.roll(batch, -1, axis=3)) / 2
    four = sum(np.roll(batch, s, axis=a) for a in (2, 3) for s in (1, -1)) / 4
    assert np.allclose(self_ensemble(shift_right, batch, 2), lr, atol=1e-6)
    assert np.allclose(self_ensemble(shift_right, batch, 4), four, atol=1e-6)
    assert np.allclose(self_ensemble(shift_right, batch, 1), np.roll(batch, 1, axis=3), atol=1e-6)
    sizes = sorted(ORIENTATIONS)
    assert sizes == [1, 2, 4, 8]
    for small, big in zip(sizes, sizes[1:], strict=False):
        assert set(ORIENTATIONS[small]) <= set(ORIENTATIONS[big]) and len(set(ORIENTATIONS[big])) == big


def test_a_nan_in_any_orientation_reaches_the_output_check() -> None:
    def broken_once(x: np.ndarray) -> np.ndarray:
        broken_once.n += 1  # type: ignore[attr-defined]
        return np.full_like(x, np.nan) if broken_once.n == 5 else x  # type: ignore[attr-defined]

    broken_once.n = 0  # type: ignore[attr-defined]
    assert np.isnan(self_ensemble(broken_once, np.zeros((1, 3, 4, 4), np.float32))).all()


@pytest.mark.parametrize("backend_name", ["torch", "onnx"])
def test_tiles_stay_exact_and_the_result_differs_from_one_pass(
    weights: Path, onnx_file: Path, backend_name: str
) -> None:
    """Each orientation of a tile with its context equals that orientation of the whole image, so
    the ensemble through tiles equals the ensemble of the whole image (non-square tiles turned);
    it is not the single pass, and gray goes through it too."""
    backend = make_backend(weights if backend_name == "torch" else onnx_file, backend_name, "cpu", "fp32", threads=1)
    x = _noisy().astype(np.float32) / 255
    whole = restore_pixels(x, backend, tile=0, self_ensemble=8)
    tiled = restore_pixels(x, backend, tile=32, overlap=8, self_ensemble=8)
    assert whole.shape == x.shape
    assert np.abs(whole - tiled).max() < 1e-4
    assert np.abs(whole - restore_pixels(x, backend, tile=0)).max() > 1e-3
    half = restore_pixels(x, backend, tile=32, overlap=8, self_ensemble=2)
    assert np.abs(half - restore_pixels(x, backend, tile=0, self_ensemble=2)).max() < 1e-4
    assert np.abs(half - whole).max() > 1e-4
    gray = x[..., :1].copy()
    assert restore_pixels(gray, backend, tile=32, overlap=8, self_ensemble=4).shape == gray.shape


def test_cli_records_it_redoes_outputs_and_names_it_in_exif(tmp_path: Path, weights: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_noisy()).save(src / "a.png")
    common = ["restore", str(src), str(out), "-w", str(weights), "--device", "cpu", "--precision", "fp32",
              "--threads", "1", "--json"]

    def run(*extra: str) -> dict:
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    single = run()
    before = np.asarray(Image.open(out / "a.png"))
    assert single["self_ensemble"] == 1 and single["processed"] == 1
    summary = run("--self-ensemble", "8")
    assert (summary["processed"], summary["self_ensemble"]) == (1, 8)  # a setting that changes pixels
    assert not np.array_equal(np.asarray(Image.open(out / "a.png")), before)
    assert "self-ensemble x8" in Image.open(out / "a.png").getexif().get(0x0131)
    record = json.loads((out / ".invrep-restore.json").read_text())
    assert record["entries"]["a.png"]["settings"]["self_ensemble"] == 8
    assert run("--self-ensemble", "8")["skipped"] == 1
    assert run("--self-ensemble", "4")["processed"] == 1  # another size is another setting
    assert "self-ensemble x4" in Image.open(out / "a.png").getexif().get(0x0131)
    # off, it is recorded as before the option existed (no key), so older records still match
    assert run()["processed"] == 1
    assert "self_ensemble" not in json.loads((out / ".invrep-restore.json").read_text())["entries"]["a.png"]["settings"]


def test_bench_rows_can_be_scored_with_it(tmp_path: Path, weights: Path) -> None:
    Image.fromarray(_noisy(1, (40, 40, 3))).save(tmp_path / "a.png")
    args = ["bench", str(tmp_path), "--sigma", "25", "-w", str(weights), "--backends", "torch",
            "--precisions", "fp32", "--device", "cpu", "--in-process", "--threads", "1", "--baselines", "noisy",
            "--json"]
    rows = []
    for extra in ([], ["--self-ensemble", "8"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        rows += [r for r in json.loads(result.stdout)["rows"] if r["method"] == "invrep"]
    assert [r["self_ensemble"] for r in rows] == [1, 8]
    assert rows[0]["psnr"] != rows[1]["psnr"]


@pytest.mark.parametrize("command", ["restore", "bench"])
def test_a_size_with_no_orientation_set_is_refused(tmp_path: Path, weights: Path, command: str) -> None:
    Image.fromarray(_noisy(2, (40, 40, 3))).save(tmp_path / "a.png")
    args = [command, str(tmp_path)] + ([str(tmp_path / "out")] if command == "restore" else ["--sigma", "25"])
    result = runner.invoke(app, [*args, "-w", str(weights), "--self-ensemble", "3"])
    assert result.exit_code == 2
    assert "--self-ensemble 3" in result.output and "1, 2, 4, 8" in result.output
    assert not (tmp_path / "out").exists()
