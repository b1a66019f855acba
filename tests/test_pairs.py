"""`invrep bench --pairs`: noisy/reference files matched by pattern, classical rows at the estimated
and the oracle level, model rows for several weights. Tiny generated pairs in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from invrep_cli.cli import app
from invrep_cli.errors import DataError, UsageError
from invrep_cli.noise import estimate_sigma
from invrep_cli.pairs import estimated_sigma, load_pairs, match_pairs, oracle_sigma
from tests.conftest import write_images

runner = CliRunner()


def write_pairs(folder: Path, count: int, size: int = 48, sigma: float = 10.0, seed: int = 0,
                noisy: str = "{}_real.png", ref: str = "{}_mean.png") -> list[str]:
    """Smooth references and noisy twins (Gaussian, quantised) named by the patterns; returns pair names."""
    rng = np.random.default_rng(seed)
    names = []
    for path in write_images(folder / "tmp", count, size=(size, size), seed=seed):
        clean = np.asarray(Image.open(path))
        path.unlink()
        name = path.stem
        for pattern, image in ((ref, clean), (noisy, np.clip(np.rint(clean + rng.normal(0, sigma, clean.shape)), 0,
                                                                      255).astype(np.uint8))):
            out = folder / pattern.format(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out)
        names.append(name)
    (folder / "tmp").rmdir()
    return names


def test_match_pairs_by_pattern_recursive_and_custom(tmp_path: Path) -> None:
    names = write_pairs(tmp_path / "cc", 2)
    write_pairs(tmp_path / "cc" / "sub", 1, seed=1)
    write_images(tmp_path / "cc" / "other", 1)  # matches neither pattern: not part of the benchmark
    pairs = match_pairs(tmp_path / "cc")
    assert [p.name for p in pairs] == [*names, "sub/img_000"]
    assert pairs[-1].noisy == tmp_path / "cc" / "sub" / "img_000_real.png"
    assert pairs[-1].reference == tmp_path / "cc" / "sub" / "img_000_mean.png"
    # a layout by folder: the '*' names the pair in both
    write_pairs(tmp_path / "sidd", 2, noisy="noisy/{}.png", ref="gt/{}.png")
    custom = match_pairs(tmp_path / "sidd", "noisy/*.png", "gt/*.png")
    assert [(p.name, p.noisy.parent.name, p.reference.parent.name) for p in custom] == [
        ("img_000", "noisy", "gt"), ("img_001", "noisy", "gt")]


def test_match_pairs_errors_name_the_files(tmp_path: Path) -> None:
    write_pairs(tmp_path, 2)
    (tmp_path / "img_000_mean.png").unlink()
    Image.new("RGB", (16, 16)).save(tmp_path / "extra_mean.png")
    with pytest.raises(DataError, match=r"img_000_real\.png \(no reference\).*extra_mean\.png \(no noisy file\)"):
        match_pairs(tmp_path)
    with pytest.raises(DataError, match=r"no file matches --noisy-pattern '\*_noisy\.png'"):
        match_pairs(tmp_path, noisy_pattern="*_noisy.png")
    with pytest.raises(DataError, match="match both"):
        match_pairs(tmp_path, noisy_pattern="*.png", ref_pattern="*_mean.png")
    with pytest.raises(UsageError, match="exactly one"):
        match_pairs(tmp_path, noisy_pattern="img_00?_real.png")
    with pytest.raises(DataError, match="not found"):
        match_pairs(tmp_path / "missing")


def test_levels_and_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    # flat enough for the block estimator (it needs a few dozen quiet 16x16 blocks in one intensity bin)
    ref = np.full((256, 256, 3), 120, dtype=np.uint8)
    noisy = np.clip(np.rint(ref + rng.normal(0, 8, ref.shape)), 0, 255).astype(np.uint8)
    assert oracle_sigma(noisy, ref) == pytest.approx(8.0, rel=0.05)
    assert estimated_sigma(noisy) == pytest.approx(255 * estimate_sigma(noisy / 255.0), rel=1e-4)
    assert estimated_sigma(noisy) == pytest.approx(8.0, rel=0.15)
    Image.fromarray(noisy).save(tmp_path / "a_real.png")
    Image.fromarray(ref[:128]).save(tmp_path / "a_mean.png")
    with pytest.raises(DataError, match="pair a: .* is \\(256, 256, 3\\) but .* is \\(128, 256, 3\\)"):
        load_pairs(tmp_path)
    Image.fromarray(ref).save(tmp_path / "a_mean.png")
    (tmp_path / "b_real.png").write_bytes(b"not a png")
    Image.fromarray(ref).save(tmp_path / "b_mean.png")
    pairs, notes = load_pairs(tmp_path)
    assert [p.files.name for p in pairs] == ["a"] and "b: pair left out, cannot be read" in notes[0]
    assert pairs[0].sigma_oracle == pytest.approx(oracle_sigma(noisy, ref))


@pytest.fixture
def two_weights(tmp_path: Path) -> list[Path]:
    import torch

    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.config import ModelConfig
    from invrep_cli.models.restorer import Restorer

    tiny = ModelConfig(name="tiny", width=4, n_res_blocks=1, disc_width=4, disc_scales=2, disc_layers=2)
    paths = []
    for i, name in enumerate(("model-a", "model-b")):
        torch.manual_seed(i)
        paths.append(save_restorer(Restorer(tiny).eval(), tmp_path / f"{name}.safetensors"))
    return paths


def test_cli_pairs_rows_json_and_table(tmp_path: Path, two_weights: list[Path]) -> None:
    write_pairs(tmp_path / "pairs", 3, sigma=12.0)
    args = ["bench", str(tmp_path / "pairs"), "--pairs", "--limit", "2", "--weights", str(two_weights[0]),
            "--weights", str(two_weights[1]), "--backends", "torch", "--precisions", "fp32", "--device", "cpu",
            "--baselines", "noisy,nlm", "--in-process", "--threads", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "pairs" and data["config"]["pairs"] is True
    assert data["config"]["noisy_pattern"] == "*_real.png" and data["config"]["ref_pattern"] == "*_mean.png"
    assert [i["name"] for i in data["images"]] == ["img_000", "img_001"]  # --limit 2 of 3
    for image in data["images"]:
        assert {"name", "width", "height", "channels", "noisy", "reference", "sigma_estimated",
                "sigma_oracle"} <= image.keys()
        assert image["noisy"].endswith("_real.png") and image["sigma_oracle"] == pytest.approx(12.0, rel=0.15)
    rows = data["rows"]
    assert all(r["sigma"] is None for r in rows)
    assert [(r["method"], r["noise_level"], r["weights"]) for r in rows] == [
        ("noisy", None, None), ("nlm", "estimated", None), ("invrep", None, "model-a"), ("invrep", None, "model-b"),
        ("nlm", "oracle", None)]  # upper bounds last, after the results a user can have
    assert [r["upper_bound"] for r in rows] == [False, False, False, False, True]
    noisy, estimated, _, _, oracle = rows
    assert estimated["detail"]["sigma_per_image"] == [i["sigma_estimated"] for i in data["images"]]
    assert oracle["detail"]["sigma_per_image"] == [i["sigma_oracle"] for i in data["images"]]
    assert oracle["detail"]["h_per_image"][0] > 0 and oracle["psnr"] > noisy["psnr"] + 1.0
    # 48 x 48 is too small for the block estimator: the wavelet level stands in (it was 0, and NLM
    # left those images as they were)
    assert estimated["detail"]["sigma_per_image"] == pytest.approx([12.0, 12.0], rel=0.5)
    assert estimated["psnr"] > noisy["psnr"] + 1.0
    assert not any("estimated noise level" in note for note in data["notes"])
    for row in rows:
        assert row["skipped"] is None and row["failed"] is None, row
        assert math.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 and row["images"] == 2
    # the table names the levels and marks the oracle one
    table = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "2 pairs" in table.stdout and "estimated" in table.stdout and "oracle, upper bound" in table.stdout
    assert "model-a" in table.stdout and "model-b" in table.stdout


def test_cli_pairs_usage_errors_exit_2(tmp_path: Path) -> None:
    write_pairs(tmp_path / "pairs", 2)
    (tmp_path / "pairs" / "img_001_mean.png").unlink()
    base = ["bench", str(tmp_path / "pairs"), "--pairs", "--backends", "", "--baselines", "noisy", "--in-process"]
    unmatched = runner.invoke(app, base)
    assert unmatched.exit_code == 2 and "img_001_real.png (no reference)" in unmatched.stderr
    none = runner.invoke(app, [*base, "--noisy-pattern", "*_noisy.png"])
    assert none.exit_code == 2 and "no noisy/reference pairs" in none.stderr
    assert runner.invoke(app, [*base, "--sigma", "25"]).exit_code == 2
    assert runner.invoke(app, ["bench", "--pairs", "--backends", ""]).exit_code == 2
    assert runner.invoke(app, ["bench", str(tmp_path), "--noisy-pattern", "*_x.png", "--backends", ""]).exit_code == 2


def test_cc15_crops_script_writes_one_labelled_strip(tmp_path: Path, two_weights: list[Path]) -> None:
    """benchmarks/cc15_crops.py on a tiny pair and two random tiny models: five panels of crop x scale."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cc15_crops.py"
    spec = importlib.util.spec_from_file_location("cc15_crops", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_pairs(tmp_path / "pairs", 2, size=64)
    out = tmp_path / "strip" / "crop.png"
    args = [str(out), "-a", str(two_weights[0]), "-b", str(two_weights[1]), "--folder", str(tmp_path / "pairs"),
            "--crop", "40", "--scale", "2", "--threads", "1"]
    assert module.main(args) == 0
    with Image.open(out) as strip:
        assert strip.size == (5 * 80, 80)
        # the last panel is the reference crop (centred), magnified 2x by nearest neighbour
        reference = np.asarray(Image.open(tmp_path / "pairs" / "img_000_mean.png"))[12:52, 12:52]
        assert np.array_equal(np.asarray(strip.convert("RGB"))[40:, 4 * 80 + 40:][::2, ::2], reference[20:, 20:])
    assert module.main([*args[:-4], "--pair", "img_001", "--at", "0,0"]) == 0
    assert module.main([str(out), "-a", "x", "-b", "y", "--folder", str(tmp_path / "missing")]) == 2


def test_estimated_level_reaches_nlm(tmp_path: Path) -> None:
    """A pair the estimator can measure: NLM's estimated row gets that level (not 0) and denoises."""
    from invrep_cli.bench import BenchConfig, run_bench

    rng = np.random.default_rng(3)
    ref = np.full((256, 256, 3), 120, dtype=np.uint8)
    Image.fromarray(ref).save(tmp_path / "flat_mean.png")
    Image.fromarray(np.clip(np.rint(ref + rng.normal(0, 8, ref.shape)), 0, 255).astype(np.uint8)).save(
        tmp_path / "flat_real.png")
    result = run_bench(BenchConfig(clean_dir=str(tmp_path), pairs=True, backends=(), baselines=("noisy", "nlm"),
                                   isolate=False))
    noisy, estimated, oracle = result.rows
    assert estimated.noise_level == "estimated" and oracle.upper_bound
    assert estimated.detail["sigma_per_image"][0] == pytest.approx(8.0, rel=0.15)
    assert estimated.detail["h_per_image"][0] > 0 and estimated.psnr > noisy.psnr + 3.0
