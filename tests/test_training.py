"""The training package's pieces alone: the LIR model's step on tensors, stage 2's freeze, the
no-reference criterion, the start-weights choice, --time sizing, and --resume's option check."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from invrep_cli.cli import app
from invrep_cli.config import LossWeights, ModelConfig, TrainConfig, model_preset
from invrep_cli.data import parse_noise
from invrep_cli.errors import UsageError
from invrep_cli.losses import gaussian_blur
from invrep_cli.noise import GRAY_CORR, ImageNoise, NoiseModel
from invrep_cli.training import LIRModel
from invrep_cli.training.budget import parse_duration, stage1_steps_for_budget
from invrep_cli.training.criterion import NoisyImage, estimated_psnr, prepare
from invrep_cli.training.init_weights import choose_init_weights, traits_of_description
from invrep_cli.weights import DEFAULT_WEIGHTS
from tests.conftest import write_images
from tests.test_train import TINY, _noisy_photos, run_train, step_records

runner = CliRunner()


def _batch(seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=g) * 2 - 1, torch.rand(2, 3, size, size, generator=g) * 2 - 1


def _model(config: ModelConfig, warmup: int, **cfg: Any) -> LIRModel:
    train_cfg = TrainConfig(out_dir="unused", clean_dir="unused", model=config, losses=LossWeights(semantic=0.0), **cfg)
    return LIRModel(config, train_cfg, warmup_steps=warmup, noise_model=NoiseModel(spec=parse_noise("gaussian:25")))


def test_train_step_on_a_tensor_batch_and_state_round_trip(tiny_config: ModelConfig) -> None:
    """Both stages run on tensors alone; a model loaded from state_dict() takes the same next step."""
    torch.manual_seed(0)
    model = _model(tiny_config, warmup=1)
    stage1 = model.train_step(_batch(0))
    assert set(stage1) == {"warmup_l1"} and model.step == 1 and model.stage == 2
    stage2 = model.train_step(_batch(1))
    assert {"d_repr", "d_noisy", "d_clean", "g_total", "cycle_noisy"} <= set(stage2)
    assert all(torch.isfinite(v) for v in stage2.values())
    assert set(model.visuals) == {"x", "x_ab", "y", "x_ba"}
    twin = _model(tiny_config, warmup=1)
    twin.load_state_dict(copy.deepcopy(model.state_dict()))
    rng = torch.get_rng_state()
    a = model.train_step(_batch(2))
    torch.set_rng_state(rng)
    b = twin.train_step(_batch(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name, module in model.nets.items():
        other = dict(getattr(twin.nets, name).state_dict())
        assert all(torch.equal(v, other[k]) for k, v in module.state_dict().items()), name


def test_stage2_freeze_keeps_the_restorer_bit_identical(tiny_config: ModelConfig) -> None:
    model = _model(tiny_config, warmup=1, lir_freeze_steps=2)
    model.train_step(_batch(0))  # stage 1

    def snapshot(name: str) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in getattr(model.nets, name).state_dict().items()}

    restorer = {name: snapshot(name) for name in ("noisy_encoder", "clean_decoder")}
    others = {name: snapshot(name) for name in ("noisy_decoder", "clean_encoder", "noisy_discriminator")}
    for seed in (1, 2):
        assert model.restorer_frozen
        model.train_step(_batch(seed))
    for name, before in restorer.items():
        after = getattr(model.nets, name).state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name  # weights and BatchNorm statistics
    for name, before in others.items():
        after = getattr(model.nets, name).state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()), name
    assert not model.restorer_frozen
    model.train_step(_batch(3))
    after = model.nets.noisy_encoder.state_dict()
    assert any(not torch.equal(restorer["noisy_encoder"][k], after[k]) for k in after)


def _scene(rng: np.random.Generator, size: int = 320) -> np.ndarray:
    """A ramp with flat rectangles: edges to lose by over-smoothing, flat areas to fit the noise on."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.2 + 0.5 * (0.6 * xx + 0.4 * yy) * (0.7 + 0.15 * c) for c in range(3)], -1)
    for _ in range(6):
        top, left = rng.integers(0, size - 60, 2)
        side = int(rng.integers(20, 60))
        img[top : top + side, left : left + side] = rng.uniform(0.1, 0.9, 3)
    return img


def test_no_reference_criterion_ranks_restorers_as_the_reference_does() -> None:
    rng = np.random.default_rng(0)
    cleans = [_scene(rng) for _ in range(2)]
    noisy = [np.clip(c + rng.standard_normal(c.shape) * 25 / 255, 0, 1).astype(np.float32) for c in cleans]
    images = prepare(noisy)
    assert len(images) == 2

    def blur(sigma: float) -> Any:
        return (lambda t: gaussian_blur(t, sigma)) if sigma else (lambda t: t)

    def true_psnr(fn: Any) -> float:
        mse = np.mean([
            ((fn(torch.from_numpy(n.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0) - c) ** 2).mean()
            for n, c in zip(noisy, cleans, strict=True)
        ])  # fmt: skip
        return 10 * math.log10(1 / mse)

    # doing nothing, a little too little, about right; the criterion must order them as PSNR does
    restorers = {"identity": blur(0), "light": blur(0.6), "good": blur(1.5)}
    truth = {k: true_psnr(f) for k, f in restorers.items()}
    estimate = {k: estimated_psnr(f, images) for k, f in restorers.items()}
    assert sorted(truth, key=truth.get) == sorted(estimate, key=estimate.get) == ["identity", "light", "good"]
    assert abs(estimate["identity"] - truth["identity"]) < 0.5  # the identity's risk is the noise itself


def test_no_reference_criterion_gives_no_score_where_its_estimate_is_negative() -> None:
    """A dark frame clipped at 0 holds far less noise than the fitted Gaussian's variance, which SURE
    takes off: a restorer that outputs black reads a negative squared error. That is no score (it
    read 100 dB before), and the report says so instead of quoting it."""
    fit = ImageNoise((0.0,) * 3, ((60 / 255) ** 2,) * 3, 0.0, GRAY_CORR)
    dark = NoisyImage(np.zeros((64, 64, 3), np.float32), fit)
    assert estimated_psnr(torch.zeros_like, [dark]) is None
    assert estimated_psnr(lambda t: t, [dark]) is not None  # the identity pays its divergence back


def test_no_reference_criterion_counts_banding_in_the_noise() -> None:
    """With column banding read into the fit, doing nothing still scores the noise's own level: the
    offsets' variance is part of the noise, not of the restorer's error."""
    rng = np.random.default_rng(1)
    cleans = [_scene(rng) for _ in range(2)]
    noisy = [
        np.clip(c + rng.standard_normal(c.shape) * 10 / 255 + rng.standard_normal((1, c.shape[1], 1)) * 8 / 255, 0, 1)
        for c in cleans
    ]
    images = prepare([n.astype(np.float32) for n in noisy])
    assert len(images) == 2 and all(img.noise.column_std > 5 / 255 for img in images)
    truth = 10 * math.log10(1 / np.mean([((n - c) ** 2).mean() for n, c in zip(noisy, cleans, strict=True)]))
    assert estimated_psnr(lambda t: t, images) == pytest.approx(truth, abs=0.5)


def test_report_scores_unmeasurable_frames_under_the_folders_fit(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """Small dark frames (a fluorescence field: most blocks hold a pixel at 0, which the fit does
    not read) cannot be fitted together, though the run fitted its whole folder: the report scores
    them under that fit and says so, instead of giving no score and no picture."""
    from invrep_cli.models import Restorer
    from invrep_cli.training.report import write_report

    rng = np.random.default_rng(2)
    frames = [np.repeat(np.clip(0.01 + rng.standard_normal((48, 48, 1)) * 0.01, 0, 1), 3, 2).astype(np.float32)
              for _ in range(2)]  # fmt: skip
    assert prepare(frames) == []  # nothing to measure in them alone
    folder = NoiseModel(fitted=(
        ImageNoise(gain=(0.0,) * 3, floor=(0.02**2,) * 3, blur=0.0, channel_corr=((1.0, 1.0, 1.0),) * 3),
        ImageNoise(gain=(0.0,) * 3, floor=(0.01**2,) * 3, blur=0.0, channel_corr=((1.0, 1.0, 1.0),) * 3),
        ImageNoise(gain=(0.0,) * 3, floor=(0.03**2,) * 3, blur=0.0, channel_corr=((1.0, 1.0, 1.0),) * 3),
    ))
    assert folder.typical_fit() == folder.fitted[0]  # the median level
    restorer, device = Restorer(tiny_config).eval(), torch.device("cpu")
    assert write_report(frames, restorer, None, "none", tmp_path / "a.png", device) is None
    report = write_report(frames, restorer, None, "none", tmp_path / "b.png", device,
                          folder_noise=folder.typical_fit())  # fmt: skip
    assert report is not None and report.images == 2 and report.folder_fit_images == 2
    assert math.isfinite(report.trained_score) and (tmp_path / "b.png").is_file()
    assert report.to_dict()["folder_fit_images"] == 2


#: the Gaussian model (still in weights/, no longer registered): the white-noise model of the choice
GAUSS_ENTRY = {"name": "lir-unet-gauss", "bundled": True, "file": "weights/lir-unet-gauss.safetensors", "url": "",
               "sha256": "dec1b0da7c735f4f490633e3922df0caa4338ee09f470984bee924dc38c87063", "size": 10917724}
#: what a camera-noise model records (run A of lir-unet-real did, before it became a blend of models)
CAMERA_DESCRIPTION = ("fitted per image on 95 images: std at mid-gray 2.51 (0-255; 0.00-7.41), spatial blur 0.80 px, "
                      "channel correlation 0.92, JPEG quality 75 (median of 95 JPEG files)")


def test_fitted_noise_chooses_the_nearest_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invrep_cli import weights
    from invrep_cli.checkpoint import load_restorer, save_restorer
    from invrep_cli.fsutil import sha256_file

    # a white-noise and a camera-noise model of the bundled shape, so the rule has a choice to make
    gauss = load_restorer(weights.package_root() / GAUSS_ENTRY["file"])[0]
    camera_file = save_restorer(gauss, tmp_path / "camera.safetensors", {"noise_model": CAMERA_DESCRIPTION})
    camera_entry = {"name": "camera-model", "bundled": True, "file": str(camera_file), "url": "",
                    "sha256": sha256_file(camera_file), "size": camera_file.stat().st_size}
    (tmp_path / "registry.json").write_text(json.dumps([GAUSS_ENTRY, camera_entry]), encoding="utf-8")
    monkeypatch.setenv(weights.REGISTRY_ENV, str(tmp_path / "registry.json"))
    unet = model_preset("lir-lite-unet")
    white = NoiseModel(spec=parse_noise("gaussian:5-50"))
    path, why = choose_init_weights("auto", unet, white)
    assert path is not None and path.endswith("lir-unet-gauss.safetensors"), why
    camera = ImageNoise(gain=(1e-4,) * 3, floor=(1e-5,) * 3, blur=0.8, jpeg_quality=75,
                        channel_corr=((1, 0.9, 0.9), (0.9, 1, 0.9), (0.9, 0.9, 1)))  # fmt: skip
    path, why = choose_init_weights("auto", unet, NoiseModel(fitted=(camera,)))
    assert path == str(camera_file), why
    assert choose_init_weights("auto", model_preset("lir"), white)[0] is None  # another shape: random weights
    assert choose_init_weights("none", unet, white)[0] is None
    assert traits_of_description("x; own = gaussian:0-50 (the --synthetic spec)").blur == 0.0


def test_durations_and_budget_sizing() -> None:
    assert parse_duration("45s") == 45 and parse_duration("20m") == 1200 and parse_duration("1h30m") == 5400
    for bad in ("20", "fast", "0s", ""):
        with pytest.raises(UsageError):
            parse_duration(bad)
    assert stage1_steps_for_budget(100, 10, 0.5, reserve_s=10) == 160
    assert stage1_steps_for_budget(100, 10, 0.5, lir_steps=10, stage2_step_s=2.0, reserve_s=10) == 120
    with pytest.raises(UsageError, match="no time to train"):
        stage1_steps_for_budget(5, 10, 0.5)


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    write_images(tmp_path / "clean", 6, size=(40, 40))
    return tmp_path / "clean"


def test_time_budget_sizes_the_steps_from_a_probe(tmp_path: Path, clean_dir: Path) -> None:
    """A tiny --time run plans its steps from timed probe steps, logs the plan (and ETA) before the
    first step, runs exactly the planned steps, and the probe leaves no trace: its first step is a
    --steps run's first step."""
    out = tmp_path / "timed"

    def train(run: Path, *extra: str) -> Any:
        tiny = TINY[: TINY.index("--warmup-steps")]  # stage 1: what --time sizes
        return runner.invoke(app, ["train", "--clean", str(clean_dir), "--synthetic", "gaussian:25", "--out", str(run),
                                   *tiny, "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--device", "cpu",
                                   "--report-images", "0", "--log-every", "50", "--quiet", *extra])  # fmt: skip

    result = train(out, "--time", "12s")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    plan = next(r for r in records if r["event"] == "plan")
    assert plan["stage1_step_s"] > 0 and plan["steps"] >= 1 and plan["steps"] == plan["warmup_steps"]
    assert records.index(plan) < min(i for i, r in enumerate(records) if r["event"] == "step")
    assert max(step_records(out)) == plan["steps"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == plan["steps"] and ckpt["train_config"]["time_budget"] == 12.0
    again = train(out, "--time", "12s", "--resume")  # the run's own budget: continue to its plan, done
    assert again.exit_code == 0, again.output
    assert torch.load(out / "last.pt", weights_only=True)["step"] == plan["steps"]
    twin = tmp_path / "steps"
    assert train(twin, "--steps", "1", "--time", "1h").exit_code == 0  # a step count wins over --time
    first, twin_first = step_records(out)[1], step_records(twin)[1]
    assert first["warmup_l1"] == twin_first["warmup_l1"]


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [("--lr", "3e-4", "--lr"), ("--batch-size", "3", "--batch-size"), ("--crop-size", "36", "--crop-size"),
     ("--seed", "7", "--seed"), ("--synthetic", "gaussian:50", "--synthetic"),
     ("--disc-high-pass", "20", "--disc-high-pass"), ("--clean-disc-high-pass", "0", "--clean-disc-high-pass")],
)  # fmt: skip
def test_resume_refuses_a_changed_option(tmp_path: Path, clean_dir: Path, option: str, value: str, shown: str) -> None:
    out = tmp_path / "run"
    assert run_train(out, clean_dir, "--steps", "1", "--w-semantic", "0").exit_code == 0
    result = run_train(out, clean_dir, "--steps", "2", "--w-semantic", "0", "--resume", option, value)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert shown in text and "changes the run" in text and "--workers" in text  # the safe list is given
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1
    safe = run_train(out, clean_dir, "--steps", "2", "--w-semantic", "0", "--resume", "--log-every", "5")
    assert safe.exit_code == 0, safe.output


def test_stage2_options_may_change_on_resume_until_stage_2s_first_step(tmp_path: Path, clean_dir: Path) -> None:
    """One stage 1, several stage 2s: a run that has taken no stage-2 step resumes with other
    stage-2 options (G_X on the noise model adds the gate to the generators' optimiser, the rates
    split it into groups, the discriminators read the high-pass), and they are what stage 2 then
    runs; past stage 2's first step the same change is refused."""
    out = tmp_path / "run"
    base = ["--warmup-steps", "1", "--w-semantic", "0", "--log-every", "1", "--report-images", "0"]
    assert run_train(out, clean_dir, "--steps", "1", *base).exit_code == 0
    high_pass = ["--disc-high-pass", "20", "--clean-disc-high-pass", "0"]
    stage2 = ["--lir-freeze", "1", "--gx-noise-model", "--lir-gx-lr", "1e-3", "--w-cycle", "5", *high_pass,
              "--lr", "2e-4"]  # fmt: skip
    resumed = run_train(out, clean_dir, "--steps", "3", *base, *stage2, "--resume")
    assert resumed.exit_code == 0, resumed.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["train_config"]["lir_freeze_steps"] == 1
    assert ckpt["model_config"]["disc_high_pass"] == 20 and ckpt["model_config"]["clean_disc_high_pass"] == 0
    assert ckpt["train_config"]["losses"]["cycle"] == 5
    assert [g["lr"] for g in ckpt["optimizers"]["generators"]["param_groups"]] == [2e-4, 1e-3]
    assert float(ckpt["noise_gate"]) != 0  # the gate learnt: G_X ran on the noise model
    refused = run_train(out, clean_dir, "--steps", "4", *base, *stage2[:-2], "--lr", "3e-4", "--resume")
    assert refused.exit_code == 2 and "--lr" in refused.output
    no_high_pass = [a for a in stage2 if a not in high_pass]
    refused = run_train(out, clean_dir, "--steps", "4", *base, *no_high_pass, "--resume")
    assert refused.exit_code == 2 and "--disc-high-pass" in refused.output


def test_an_option_a_stage_2_checkpoint_predates_is_compared_with_its_default(tmp_path: Path, clean_dir: Path) -> None:
    """A run past stage 2's first step made before --gx-residual (and --w-anchor) existed went by
    their defaults: resuming it with other values is refused by the option check, with the
    defaults it is not."""
    out = tmp_path / "run"
    base = ["--warmup-steps", "1", "--w-semantic", "0", "--report-images", "0", "--gx-noise-model"]
    assert run_train(out, clean_dir, "--steps", "2", *base).exit_code == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    del ckpt["train_config"]["gx_residual"], ckpt["train_config"]["losses"]["anchor"]
    torch.save(ckpt, out / "last.pt")
    refused = run_train(out, clean_dir, "--steps", "3", *base, "--gx-residual", "noise-code", "--w-anchor", "1",
                        "--resume")  # fmt: skip
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert "--gx-residual: the run has 'image'" in text and "--w-anchor: the run has 0.0" in text
    assert run_train(out, clean_dir, "--steps", "3", *base, "--resume").exit_code == 0


def test_default_recipe_starts_from_the_bundled_model_and_reports(tmp_path: Path) -> None:
    """No --config, --init-weights or stage options: lir-lite-unet from the bundled model nearest the
    noise, stage 1 only (no VGG looked for), and the no-reference report with its picture."""
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.06)
    write_images(tmp_path / "clean64", 2, size=(72, 72))  # the default 64-px crops
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean64"), "--out", str(out),
            "--steps", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu",
            "--report-images", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "VGG19" not in result.output and "DISABLED" not in result.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["model_config"]["name"] == "lir-lite-unet" and ckpt["warmup_steps"] == 2
    assert DEFAULT_WEIGHTS in ckpt["init_weights_used"] and ckpt["semantic_note"].startswith("not used")
    assert "estimated" not in result.output or "dB" in result.output
    assert "no reference" in " ".join(result.output.split()) and (out / "report.png").is_file()
    report = next(json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"report"' in line)
    assert report["images"] == 2 and report["start_estimated_psnr"] is not None
    # two steps at batch 2 cannot improve a trained model, but what ships must not have lost it: the
    # moving average of a trained start keeps it (its warm-up, which forgets a random start, cost
    # this score 20 dB after these 2 steps)
    assert report["trained_estimated_psnr"] > report["start_estimated_psnr"] - 1.0, report


def test_missing_vgg_is_one_short_line(tmp_path: Path, clean_dir: Path) -> None:
    args = ["train", "--clean", str(clean_dir), "--synthetic", "gaussian:25", "--out", str(tmp_path / "run"), *TINY,
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--device", "cpu", "--steps", "1"]  # fmt: skip
    result = runner.invoke(app, args)  # TINY: LIR from step 0, semantic on, the VGG server not there
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "VGG19" in line]
    assert len(lines) == 1 and len(lines[0]) < 300, lines


def test_gx_begun_as_the_noise_model_reproduces_its_statistics(tiny_config: ModelConfig) -> None:
    """With the residual's gate at zero, G_X's x_ba is y plus the fitted model's noise, whatever
    G_X's weights; one stage-2 step starts to open the gate."""
    model = _model(tiny_config, warmup=0, gx_noise_model=True)
    assert model.fake_noisy is not None and float(model.noise_gate.detach()) == 0.0
    y = torch.zeros(8, 3, 32, 32)  # mid-gray in [-1, 1]: no clipping at 25/255
    decoded = torch.randn(8, 3, 32, 32)
    torch.manual_seed(5)
    x_ba = model.fake_noisy(y, decoded)
    torch.manual_seed(5)
    again = model.fake_noisy(y, 5 * decoded)  # another G_X output: no effect at gate 0
    assert torch.equal(x_ba, again)
    noise01 = ((x_ba - y) / 2).detach()
    assert abs(float(noise01.mean())) < 0.003
    assert float(noise01.std()) == pytest.approx(25 / 255, rel=0.05)
    terms = model.train_step(_batch(0))
    assert float(model.noise_gate.detach()) != 0.0 and "noise_gate" in model.state_dict()
    assert float(terms["gx_gate"]) == 0.0  # the gate this step's x_ba was made with


def test_gx_gate_ramp_opens_on_schedule_whatever_the_gradient(tiny_config: ModelConfig) -> None:
    """--gx-gate-ramp N: the gate is (step since the boundary + 1) / N, capped at 1, in each stage-2
    step's x_ba, whatever Adam did to it in the step before; stage 1 leaves it at zero."""
    model = _model(tiny_config, warmup=1, gx_noise_model=True, gx_gate_ramp=2, gx_gate_scale=4.0)
    assert "gx_gate" not in model.train_step(_batch(0))
    opened = [float(model.train_step(_batch(k))["gx_gate"]) for k in range(1, 4)]
    assert opened == pytest.approx([0.5, 1.0, 1.0])


def test_gx_difference_residual_adds_what_g_x_adds_to_the_clean_image(tiny_config: ModelConfig) -> None:
    """--gx-residual difference: x_ba = y + n_fit + scale x gate x (G_X - y), so a G_X that returns
    the clean image adds nothing at any gate (the "image" residual adds gate x the scene), and
    --gx-gate-scale multiplies the gate."""
    y = torch.zeros(4, 3, 16, 16) + 0.2
    decoded = y + 0.1 * torch.randn(4, 3, 16, 16)
    fakes = {}
    for residual in ("image", "difference"):
        model = _model(tiny_config, warmup=0, gx_noise_model=True, gx_residual=residual, gx_gate_scale=10.0)
        assert model.fake_noisy is not None
        with torch.no_grad():
            model.noise_gate.fill_(0.02)  # g = 0.2

        def fake(g_x: torch.Tensor, fake_noisy=model.fake_noisy) -> torch.Tensor:
            torch.manual_seed(1)  # the same noise draw each time
            return fake_noisy(y, g_x).detach()

        fakes[residual] = fake
    fitted_only = fakes["image"](torch.zeros_like(y))  # y + n_fit
    assert torch.equal(fakes["difference"](y), fitted_only)
    assert not torch.equal(fakes["image"](y), fitted_only)
    assert torch.allclose(fakes["image"](decoded) - fitted_only, 0.2 * decoded, atol=1e-6)
    assert torch.allclose(fakes["difference"](decoded) - fitted_only, 0.2 * (decoded - y), atol=1e-6)


def test_gx_noise_code_residual_adds_only_what_the_noise_code_draws() -> None:
    """--gx-residual noise-code: x_ba = y + n_fit + g x (G_X(c (+) n) - G_X(c (+) 0)), so a G_X whose
    output ignores the noise code adds nothing at any gate, however far its output is from y (the
    scene error the "difference" residual would carry), and one that reads the code adds g x what
    the code changes."""
    from invrep_cli.objectives import NoiseModelGX, synthetic_noisy

    gate = torch.tensor(0.5)
    noise = NoiseModel(spec=parse_noise("gaussian:25"))
    code, noise_code = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    y = torch.rand(2, 3, 8, 8) * 2 - 1
    scene_only = lambda z: torch.tanh(z[:, :3]) + 0.3  # noqa: E731 (a G_X blind to the noise code)
    reads_code = lambda z: torch.tanh(z[:, :3]) + 0.1 * z[:, 4:7]  # noqa: E731

    def x_ba(decoder: Any, residual: str) -> torch.Tensor:
        torch.manual_seed(2)  # the same noise draw each time
        return synthetic_noisy(decoder, code, noise_code, y, NoiseModelGX(noise, gate, residual))

    torch.manual_seed(2)
    fitted = noise.sample((y + 1) * 0.5) * 2 - 1
    assert torch.equal(x_ba(scene_only, "noise-code"), fitted)
    assert not torch.allclose(x_ba(scene_only, "difference"), fitted, atol=1e-3)
    assert torch.allclose(x_ba(reads_code, "noise-code") - fitted, 0.5 * 0.1 * noise_code[:, :3], atol=1e-6)
    with pytest.raises(ValueError, match="noise code zeroed"):
        NoiseModelGX(noise, gate, "noise-code")(y, y)


def test_gx_noise_code_residual_trains(tiny_config: ModelConfig) -> None:
    model = _model(tiny_config, warmup=0, gx_noise_model=True, gx_residual="noise-code", gx_gate_ramp=2)
    terms = model.train_step(_batch(0))
    assert all(torch.isfinite(v) for v in terms.values()) and float(terms["gx_gate"]) == 0.5


def test_restorer_latent_noise_off_decodes_as_at_inference(tiny_config: ModelConfig) -> None:
    """--no-restorer-latent-noise: stage 2's restored x_ab is G_Y(E_X(x)) as restore computes it (no
    LIR latent noise on the code G_Y decodes); with the authors' noise it is not."""
    from invrep_cli.objectives import lir_generator_objective

    model = _model(tiny_config, warmup=0)
    x, y = _batch(0)
    with torch.no_grad():
        as_at_inference = model.forward.decode_clean(*model.forward.encode("noisy_encoder", x), x)
        _, clean_codes = lir_generator_objective(model.forward, model.nets, x, y, restorer_latent_noise=False)
        _, noisy_codes = lir_generator_objective(model.forward, model.nets, x, y)
    assert torch.allclose(clean_codes["x_ab"], as_at_inference, atol=1e-6)
    assert not torch.allclose(noisy_codes["x_ab"], as_at_inference, atol=1e-3)
    terms = _model(tiny_config, warmup=0, restorer_latent_noise=False).train_step(_batch(1))
    assert all(torch.isfinite(v) for v in terms.values())


def test_lir_restorer_lr_sets_e_x_and_g_y_apart_and_resumes_from_stage_1(tiny_config: ModelConfig) -> None:
    """--lir-restorer-lr: stage 2 moves E_X and G_Y at their own rate and the other networks at
    --lr; a stage-1 checkpoint (whose LIR optimisers took no step) loads into the split optimiser."""
    stage1 = _model(tiny_config, warmup=1)
    stage1.train_step(_batch(0))
    model = _model(tiny_config, warmup=1, lir_restorer_lr=1e-6)
    model.load_state_dict(copy.deepcopy(stage1.state_dict()))
    rates = [group["lr"] for group in model.optimizers["generators"].param_groups]
    assert rates == [1e-4, 1e-6]
    restorer = [p for name in ("noisy_encoder", "clean_decoder") for p in getattr(model.nets, name).parameters()]
    assert {id(p) for p in model.optimizers["generators"].param_groups[1]["params"]} == {id(p) for p in restorer}
    decoder = model.nets.clean_decoder
    before = {name: p.detach().clone() for name, p in decoder.named_parameters()}
    model.train_step(_batch(1))
    moved = max(float((p.detach() - before[name]).abs().max()) for name, p in decoder.named_parameters())
    assert 0 < moved <= 1.1e-6  # Adam's step is at most about the rate


def test_lir_gx_lr_moves_the_noise_generator_at_its_own_rate(tiny_config: ModelConfig) -> None:
    """--lir-gx-lr: E_X^N, G_X and the gate in a group of their own, between E_Y's group and the
    restorer's; the noise generator moves at its rate while E_Y keeps --lr."""
    model = _model(tiny_config, warmup=0, lir_gx_lr=1e-2, lir_restorer_lr=1e-6, gx_noise_model=True)
    groups = model.optimizers["generators"].param_groups
    assert [group["lr"] for group in groups] == [1e-4, 1e-2, 1e-6]
    noise = [p for name in ("noise_encoder", "noisy_decoder") for p in getattr(model.nets, name).parameters()]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in [*noise, model.noise_gate]}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.nets.clean_encoder.parameters()}
    nets = {name: getattr(model.nets, name) for name in ("noisy_decoder", "clean_encoder")}
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in nets.items()}
    model.train_step(_batch(0))
    moved = {
        name: max(float((p.detach() - b).abs().max()) for p, b in zip(net.parameters(), before[name], strict=True))
        for name, net in nets.items()
    }
    assert moved["noisy_decoder"] > 2e-3  # Adam's first step is about the rate: 1e-2, not 1e-4
    assert 0 < moved["clean_encoder"] <= 1.1e-4


def test_a_stage_1_checkpoint_loads_into_a_stage_2_with_the_gate(tiny_config: ModelConfig) -> None:
    """G_X on the noise model adds the gate to the generators' one group: a stage-1 checkpoint made
    without it (its LIR optimisers never stepped) loads, and stage 2 steps."""
    stage1 = _model(tiny_config, warmup=1)
    stage1.train_step(_batch(0))
    model = _model(tiny_config, warmup=1, gx_noise_model=True)
    model.load_state_dict(copy.deepcopy(stage1.state_dict()))
    assert model.step == 1 and all(torch.isfinite(v) for v in model.train_step(_batch(1)).values())


def test_lir_restorer_lr_cannot_be_added_to_a_run_past_stage_2s_first_step(tiny_config: ModelConfig) -> None:
    """A checkpoint made before --lir-restorer-lr existed (its field is not compared on resume) whose
    stage-2 optimiser has stepped: adding the option is refused in one line (exit 2), not torch's
    ValueError about parameter groups."""
    model = _model(tiny_config, warmup=0)
    model.train_step(_batch(0))
    with pytest.raises(UsageError, match="--lir-restorer-lr"):
        _model(tiny_config, warmup=0, lir_restorer_lr=1e-5).load_state_dict(copy.deepcopy(model.state_dict()))


def test_gx_residual_options_are_checked(tmp_path: Path, clean_dir: Path) -> None:
    checked = (("--gx-residual", "sum"), ("--gx-gate-scale", "0"), ("--lir-restorer-lr", "0"), ("--lir-gx-lr", "-1"))
    for option, value in checked:
        result = run_train(tmp_path / "run", clean_dir, "--steps", "1", option, value)
        assert result.exit_code == 2 and option in result.output


def test_high_pass_discriminators_read_the_noise_not_the_brightness(tiny_config: ModelConfig) -> None:
    """--disc-high-pass: D_X and D_Y read (image - its 3x3 mean) x gain, so a flat shift of the
    image changes nothing they see and noise does; the restorer's shape, and so its files, do not
    depend on it; the authors' discriminators (0) read the image itself."""
    from invrep_cli.models import build_models

    config = dataclasses.replace(tiny_config, disc_high_pass=20.0)
    nets = build_models(config)
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 0.5
    for disc in (nets.noisy_discriminator, nets.clean_discriminator):
        assert disc.high_pass == 20.0
        same = [torch.allclose(a, b, atol=1e-5) for a, b in zip(disc(image), disc(image + 0.3), strict=True)]
        grain = image + 0.01 * torch.randn_like(image)
        noisy = [torch.allclose(a, b, atol=1e-5) for a, b in zip(disc(image), disc(grain), strict=True)]
        assert all(same) and not any(noisy)
    authors = build_models(tiny_config).noisy_discriminator
    assert not torch.allclose(authors(image)[0], authors(image + 0.3)[0])
    noisy_only = build_models(dataclasses.replace(config, clean_disc_high_pass=0.0))
    assert noisy_only.noisy_discriminator.high_pass == 20.0 and noisy_only.clean_discriminator.high_pass == 0.0
    assert config.restorer_shape() == tiny_config.restorer_shape()
    model = _model(config, warmup=0)
    terms = model.train_step(_batch(0))
    assert torch.isfinite(terms["d_noisy"]) and torch.isfinite(terms["g_total"])


def test_disc_high_pass_is_checked(tmp_path: Path, clean_dir: Path) -> None:
    for option in ("--disc-high-pass", "--clean-disc-high-pass"):
        result = run_train(tmp_path / "run", clean_dir, "--steps", "1", option, "-1")
        assert result.exit_code == 2 and option in result.output


def test_anchor_keeps_stage1_loss_in_stage2(tiny_config: ModelConfig) -> None:
    """--w-anchor adds stage 1's loss (the restorer on clean crops under the noise model) to stage
    2's generator objective with its weight; off (0) by default, as the authors' LIR."""
    from invrep_cli.losses import weighted_total

    model = _model(tiny_config, warmup=0)
    assert "anchor" not in model.train_step(_batch(0))
    cfg = TrainConfig(out_dir="unused", clean_dir="unused", model=tiny_config,
                      losses=LossWeights(semantic=0.0, anchor=2.5))  # fmt: skip
    model = LIRModel(tiny_config, cfg, warmup_steps=0, noise_model=NoiseModel(spec=parse_noise("gaussian:25")))
    terms = model.train_step(_batch(0))
    assert float(terms["anchor"]) > 0
    lir = {k: v for k, v in terms.items() if k not in ("anchor", "g_total", "d_repr", "d_noisy", "d_clean")}
    expected = weighted_total(lir, cfg.losses) + 2.5 * terms["anchor"]
    assert float(terms["g_total"]) == pytest.approx(float(expected), rel=1e-5)


def test_resume_is_exact_across_the_freeze_with_the_stage2_pieces(tmp_path: Path, clean_dir: Path) -> None:
    """Stage 1, two frozen stage-2 steps, one free one, G_X on the noise model and the anchor on:
    stopping inside the freeze and resuming gives the uninterrupted run's losses and weights."""
    full, part = tmp_path / "full", tmp_path / "part"
    opts = ["--config", "lir-lite-unet", "--warmup-steps", "1", "--lir-freeze", "2", "--gx-noise-model",
            "--w-anchor", "1", "--w-semantic", "0", "--log-every", "1", "--report-images", "0"]  # fmt: skip
    assert run_train(full, clean_dir, "--steps", "4", *opts).exit_code == 0
    assert run_train(part, clean_dir, "--steps", "2", *opts).exit_code == 0
    resumed = run_train(part, clean_dir, "--steps", "4", *opts, "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = step_records(full), step_records(part)
    assert "anchor" in a[3] and [a[s]["stage"] for s in (1, 2, 3, 4)] == [1, 2, 2, 2]
    for step in (3, 4):
        for key in (k for k in a[step] if k not in ("time", "step_time", "event")):
            assert a[step][key] == pytest.approx(b[step][key], rel=1e-5, abs=1e-7), (step, key)
    wa, wb = (torch.load(run / "last.pt", weights_only=True) for run in (full, part))
    assert float(wa["noise_gate"]) == pytest.approx(float(wb["noise_gate"]), abs=1e-7) and float(wa["noise_gate"]) != 0
    for name in ("noisy_encoder", "noisy_decoder"):
        assert all(torch.allclose(wa["networks"][name][k].float(), wb["networks"][name][k].float(), atol=1e-6)
                   for k in wa["networks"][name])  # fmt: skip


@pytest.mark.parametrize("stage2_better", [False, True])
def test_stage2_ships_only_when_the_noisy_folder_scores_it_higher(
    tmp_path: Path, clean_dir: Path, monkeypatch: pytest.MonkeyPatch, stage2_better: bool
) -> None:
    """The final report decides: stage 2 scored below stage 1 -> restorer.safetensors is stage 1's
    (stage 2's kept beside it); scored above -> stage 2's stays. The scores are set here, so the
    test is about the decision, not about how good two tiny steps of stage 2 are."""
    import invrep_cli.training.loop as loop
    from invrep_cli.training.report import RunReport

    def fake_report(*args: Any, **kwargs: Any) -> RunReport:
        return RunReport(1, "start", 30.0, 32.0 if stage2_better else 28.0, None, stage1_score=31.0)

    monkeypatch.setattr(loop, "write_report", fake_report)
    out = tmp_path / "run"
    result = run_train(out, clean_dir, "--warmup-steps", "1", "--steps", "2", "--w-semantic", "0",
                       "--report-images", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    stage1 = (out / "restorer-stage1.safetensors").read_bytes()
    shipped = (out / "restorer.safetensors").read_bytes()
    report = next(json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"report"' in line)
    if stage2_better:
        assert report["shipped"] == "trained" and shipped != stage1
        assert not (out / "restorer-stage2.safetensors").exists()
    else:
        assert report["shipped"] == "stage 1" and shipped == stage1
        assert (out / "restorer-stage2.safetensors").read_bytes() != stage1
        warnings = [json.loads(line)["message"] for line in (out / "log.jsonl").read_text().splitlines()
                    if '"warning"' in line]  # fmt: skip
        assert any("stage 2 scored below stage 1" in w for w in warnings), warnings


def test_a_restorer_file_starts_the_light_gx_that_was_asked_for(tmp_path: Path, clean_dir: Path) -> None:
    """Restorer files hold no G_X, and the bundled ones record the authors' G_X fields: starting
    from one must build the G_X of --config (lir-lite-unet's lighter one), not the file's, and the
    start weights must still load (E_X and G_Y are the same shape)."""
    import dataclasses

    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.config import MODEL_PRESETS
    from invrep_cli.models import build_restorer

    preset = dataclasses.replace(MODEL_PRESETS["lir-lite-unet"], width=4, n_res_blocks=1, disc_scales=2)
    assert preset.gx_res_blocks == 2 and preset.gx_up_kernel == 3
    recorded = preset.restorer_shape()  # what a file written before G_X had its own fields holds
    assert recorded.gx_up_kernel == 5 and recorded != preset
    start = save_restorer(build_restorer(recorded), tmp_path / "start.safetensors")
    out = tmp_path / "run"
    args = ["train", "--clean", str(clean_dir), "--synthetic", "gaussian:25", "--out", str(out),
            "--config", "lir-lite-unet", "--width", "4", "--res-blocks", "1", "--disc-scales", "2",
            "--init-weights", str(start), "--warmup-steps", "1", "--steps", "2", "--batch-size", "2",
            "--crop-size", "32", "--workers", "0", "--device", "cpu", "--w-semantic", "0",
            "--report-images", "0"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["model_config"]["gx_up_kernel"] == 3 and ckpt["model_config"]["gx_res_blocks"] == 2
    up = ckpt["networks"]["noisy_decoder"]["up_convs.0.conv.weight"]
    assert up.shape[-1] == 3, up.shape
    assert "using the file's model config" not in result.output


def _start_weight_after(steps: int, prior_steps: int, warm_up: bool = True) -> float:
    """The share of its start a moving average still holds after ``steps`` updates toward a live
    module that has moved away from it (start 0, live 1: the average is 1 minus that share)."""
    from invrep_cli.ema import MovingAverage

    live = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        live.weight.zero_()
    average = MovingAverage(live, 0.999, warm_up=warm_up, prior_steps=prior_steps)
    with torch.no_grad():
        live.weight.fill_(1.0)
    for step in range(steps):
        average.update(step)
    return 1.0 - float(average.average.weight)


def test_the_moving_average_forgets_a_trained_start_over_a_default_length_run() -> None:
    # full decay from step 0 (checkpoints from before): 0.999^1200, 30 % of the start still shipped
    assert _start_weight_after(1200, 0, warm_up=False) == pytest.approx(0.999**1200, rel=1e-3)
    # a trained start counts as 100 averaged steps: a 2-step run ships mostly its start, the default
    # 1,200 steps have forgotten it, and a random start (prior 0) is forgotten at once
    assert _start_weight_after(2, 100) > 0.8
    assert _start_weight_after(1200, 100) < 1e-4  # (101 / 1301)^9 in exact arithmetic, float32 here
    assert _start_weight_after(2, 0) < 0.05


def test_stage1_learning_rate_ramps_up_then_decays() -> None:
    from invrep_cli.training.model import LR_RAMP_STEPS, warmup_lr_factor

    factors = [warmup_lr_factor(t, 1200) for t in range(1200)]
    assert factors[0] == pytest.approx(1 / LR_RAMP_STEPS, rel=1e-3)  # Adam's first steps are small
    peak = int(np.argmax(factors))
    assert peak == LR_RAMP_STEPS - 1 and factors[peak] > 0.99
    assert all(a <= b for a, b in zip(factors[:peak], factors[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(factors[peak:], factors[peak + 1 :], strict=False))
    assert warmup_lr_factor(5000, 1200) == pytest.approx(0.01)


def test_teacher_targets_a_share_of_stage1_crops(tiny_config: ModelConfig) -> None:
    """--teacher: a share of each stage-1 batch is the noisy crops x with the frozen teacher's outputs
    as targets; the rest stays synthetic, and the teacher does not learn."""
    from invrep_cli.models import build_restorer

    torch.manual_seed(0)
    teacher = build_restorer(tiny_config)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = LIRModel(
        tiny_config,
        TrainConfig(out_dir="unused", clean_dir="unused", noisy_dir="unused", model=tiny_config,
                    losses=LossWeights(semantic=0.0), teacher="teacher.safetensors", teacher_share=0.5),
        warmup_steps=2, noise_model=NoiseModel(spec=parse_noise("gaussian:25")), teacher=teacher,
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(4, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    assert model.taught_count(4) == 2 and model.taught_count(1) == 0
    terms = model.train_step((x, y))
    assert torch.isfinite(terms["warmup_l1"])
    seen, target = model.visuals["x"], model.visuals["y"]
    assert seen.shape[0] == 4
    assert torch.equal(seen[2:], x[:2])  # the real crops, as they came
    with torch.no_grad():
        assert torch.allclose(target[2:], teacher((x[:2] + 1) * 0.5) * 2 - 1)
    assert not torch.equal(seen[:2], y[2:])  # the synthetic half has noise drawn on y's crops
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_ensemble_targets_are_the_mean_over_orientations(tiny_config: ModelConfig) -> None:
    from invrep_cli.models import build_restorer

    torch.manual_seed(0)
    teacher = build_restorer(tiny_config)
    cfg = dict(out_dir="u", clean_dir="u", noisy_dir="u", model=tiny_config, losses=LossWeights(semantic=0.0),
               teacher="t.safetensors", teacher_share=0.5)  # fmt: skip
    noise = NoiseModel(spec=parse_noise("gaussian:25"))
    one = LIRModel(tiny_config, TrainConfig(**cfg), warmup_steps=1, noise_model=noise, teacher=teacher)
    eight = LIRModel(
        tiny_config, TrainConfig(**cfg, teacher_ensemble=8), warmup_steps=1, noise_model=noise, teacher=teacher
    )
    crops = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    def one_orientation(turns: int, mirrored: bool) -> torch.Tensor:
        seen = torch.rot90(torch.flip(crops, [3]) if mirrored else crops, turns, (2, 3))
        back = torch.rot90(teacher(seen), -turns, (2, 3))
        return torch.flip(back, [3]) if mirrored else back

    with torch.no_grad():
        by_hand = sum(one_orientation(t, m) for t in range(4) for m in (False, True)) / 8
    assert torch.allclose(eight.teach(crops), by_hand, atol=1e-5)
    assert torch.equal(one.teach(crops), teacher(crops).detach())
    assert not torch.allclose(eight.teach(crops), one.teach(crops), atol=1e-4)  # the orientations differ


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"teacher": "t.safetensors", "teacher_share": 0.3, "teacher_ensemble": 3}, "1, 2, 4 or 8"),
        ({"teacher_share": 0.3}, "go together"),
        ({"teacher": "t.safetensors"}, "go together"),
        ({"teacher": "t.safetensors", "teacher_share": 1.0}, "[0, 1)"),
        ({"teacher": "t.safetensors", "teacher_share": 0.3, "noisy_dir": None}, "give --noisy"),
    ],
)
def test_teacher_options_are_checked(extra: dict[str, Any], message: str) -> None:
    fields = {"out_dir": "o", "clean_dir": "c", "noisy_dir": "n", **extra}
    with pytest.raises(UsageError, match=re.escape(message)):
        TrainConfig(**fields)


def test_train_with_a_teacher_through_the_cli(tmp_path: Path, clean_dir: Path) -> None:
    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.models import build_restorer

    config = model_preset("lir-lite-unet", width=4, disc_width=4, n_res_blocks=1, disc_scales=2)
    teacher = save_restorer(build_restorer(config), tmp_path / "teacher.safetensors")
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.06)
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--out", str(out),
            "--init-weights", str(teacher), "--teacher", str(teacher), "--teacher-share", "0.5",
            "--steps", "2", "--warmup-steps", "2", "--batch-size", "2", "--crop-size", "32", "--workers", "0",
            "--device", "cpu", "--report-images", "0", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    start = next(json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"start"' in line)
    assert start["teacher"] == f"{teacher} on 0.5 of each stage-1 batch"
    missing_teacher = ["--out", str(tmp_path / "run2"), "--teacher", str(tmp_path / "no.safetensors")]
    missing = runner.invoke(app, [*args[:-1], *missing_teacher])
    assert missing.exit_code != 0 and "no.safetensors" in " ".join(missing.output.split())


def test_a_stage_1_checkpoint_resumed_in_another_folder_keeps_stage_1s_restorer(
    tmp_path: Path, clean_dir: Path
) -> None:
    """A stage-1 last.pt copied to a new folder and resumed into stage 2 writes stage 1's restorer
    there before its first stage-2 step, so the report can weigh the two stages."""
    from safetensors.torch import load_file

    base = ["--warmup-steps", "1", "--w-semantic", "0", "--report-images", "0"]
    stage1, tried = tmp_path / "stage1", tmp_path / "tried"
    assert run_train(stage1, clean_dir, "--steps", "1", *base).exit_code == 0
    tried.mkdir()
    shutil.copyfile(stage1 / "last.pt", tried / "last.pt")
    assert run_train(tried, clean_dir, "--steps", "2", *base, "--resume").exit_code == 0
    kept, original = load_file(tried / "restorer-stage1.safetensors"), load_file(stage1 / "restorer-stage1.safetensors")
    assert kept.keys() == original.keys()
    assert all(torch.equal(kept[k], original[k]) for k in kept)
    assert torch.load(tried / "last.pt", weights_only=True)["step"] == 2


def _fit(blur: float, corr: float, jpeg: int = 0) -> ImageNoise:
    return ImageNoise(gain=(1e-4,) * 3, floor=(1e-5,) * 3, blur=blur, jpeg_quality=jpeg,
                      channel_corr=((1, corr, corr), (corr, 1, corr), (corr, corr, 1)))  # fmt: skip


def test_camera_folders_are_colour_and_not_white() -> None:
    """--camera-teacher's test: colour fits that are blurred or JPEG'd; not gray ones, white ones or specs."""
    from invrep_cli.training.camera_teacher import choose_camera_teacher, is_camera_folder

    jpeg, blurred = NoiseModel(fitted=(_fit(0.5, 0.9, jpeg=75),) * 3), NoiseModel(fitted=(_fit(0.9, 0.6),) * 3)
    assert is_camera_folder(jpeg) and is_camera_folder(blurred)
    assert not is_camera_folder(NoiseModel(fitted=(_fit(0.9, 1.0),) * 3))  # gray: a microscope's grain
    assert not is_camera_folder(NoiseModel(fitted=(_fit(0.3, 0.2),) * 3))  # white
    assert not is_camera_folder(NoiseModel(spec=parse_noise("gaussian:25")))
    assert not is_camera_folder(None)
    assert choose_camera_teacher(jpeg, "start.safetensors", bundled_start=True)[0] == "start.safetensors"
    assert choose_camera_teacher(jpeg, "start.safetensors", bundled_start=False)[0] is None  # a user's file
    assert choose_camera_teacher(jpeg, None, bundled_start=True)[0] is None  # random weights


def test_a_camera_folder_run_is_taught_by_its_bundled_start(
    tmp_path: Path, clean_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JPEG'd colour folder started from a bundled model (auto) learns from it on real crops, at
    the camera folder's gentler stage-1 rate: the start event names both, the checkpoint keeps
    them, a resume goes on with them without repeating them; --no-camera-teacher gets none (and the
    default rate), a rate given wins, and a resume may not turn the teacher off."""
    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.config import DEFAULT_WARMUP_LR
    from invrep_cli.models import build_restorer
    from invrep_cli.training import loop
    from invrep_cli.training.camera_teacher import CAMERA_WARMUP_LR

    config = model_preset("lir-lite-unet", width=4, disc_width=4, n_res_blocks=1, disc_scales=2)
    start_file = str(save_restorer(build_restorer(config), tmp_path / "bundled.safetensors"))
    # the bundled models are full-size: a tiny one stands in as what auto picked
    monkeypatch.setattr(loop, "choose_init_weights", lambda *a: (start_file, "bundled tiny (stand-in)"))
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.03, suffix=".jpg")
    common = ["--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--config", "lir-lite-unet",
              "--width", "4", "--res-blocks", "1", "--disc-scales", "2", "--warmup-steps", "2",
              "--batch-size", "4", "--crop-size", "32", "--workers", "0", "--device", "cpu",
              "--report-images", "0", "--w-semantic", "0", "--quiet"]  # fmt: skip

    def start_event(out: Path, kind: str = "start") -> dict[str, Any]:
        lines = (out / "log.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if f'"event": "{kind}"' in line][-1]

    out = tmp_path / "run"
    first = runner.invoke(app, ["train", "--out", str(out), "--steps", "2", *common])
    assert first.exit_code == 0, first.output
    teacher = start_event(out)["teacher"]
    assert teacher.startswith(f"{start_file} on 0.25 of each stage-1 batch: its start teaches"), teacher
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["teacher_used"]["path"] == start_file
    assert ckpt["train_config"]["teacher"] is None  # the options as given, so a resume repeats them
    assert start_event(out)["warmup_lr"] == ckpt["train_config"]["warmup_lr"] == CAMERA_WARMUP_LR < DEFAULT_WARMUP_LR
    assert ckpt["optimizers"]["warmup"]["param_groups"][0]["initial_lr"] == CAMERA_WARMUP_LR
    resumed = runner.invoke(app, ["train", "--out", str(out), "--steps", "3", "--resume", *common])  # one LIR step
    assert resumed.exit_code == 0, resumed.output
    assert start_event(out, "resume")["teacher"] == teacher
    assert start_event(out, "resume")["warmup_lr"] == CAMERA_WARMUP_LR
    untaught = tmp_path / "untaught"
    off = runner.invoke(app, ["train", "--out", str(untaught), "--steps", "2", "--no-camera-teacher", *common])
    assert off.exit_code == 0 and start_event(untaught)["teacher"] is None
    assert start_event(untaught)["warmup_lr"] == DEFAULT_WARMUP_LR
    given = tmp_path / "given"
    rate = runner.invoke(app, ["train", "--out", str(given), "--steps", "2", "--warmup-lr", "5e-4", *common])
    assert rate.exit_code == 0 and start_event(given)["warmup_lr"] == 5e-4 and start_event(given)["teacher"]
    changed = runner.invoke(app, ["train", "--out", str(out), "--steps", "3", "--resume", "--no-camera-teacher",
                                  *common])  # fmt: skip
    assert changed.exit_code == 2 and "--camera-teacher" in " ".join(changed.output.split())
