"""End-to-end training through the CLI: checkpoints, logs, exact resume, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from invrep_cli.checkpoint import load_restorer
from invrep_cli.cli import app
from invrep_cli.config import LossWeights, ModelConfig, TrainConfig
from invrep_cli.training import LIRModel, Trainer
from tests.conftest import write_images
from tests.test_vgg import fake_vgg_state

runner = CliRunner()

# width 4, one residual block, 2 discriminator scales of 4 layers: crops of 32 are the minimum
# LIR from step 0 (--warmup-steps 0) unless a test asks for the warm start
TINY = ["--config", "lir-lite", "--width", "4", "--res-blocks", "1", "--disc-scales", "2", "--warmup-steps", "0"]


@pytest.fixture(autouse=True)
def _no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG lookups see an empty cache and a server that is not there: nothing leaves the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("INVREP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INVREP_VGG_WEIGHTS", raising=False)
    monkeypatch.setenv("INVREP_VGG_URL", f"http://127.0.0.1:{port}/vgg19-dcbb9e9d.pth")


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    write_images(tmp_path / "clean", 6, size=(40, 40))
    return tmp_path / "clean"


def run_train(out: Path, clean: Path, *extra: str) -> Any:
    args = [
        "train",
        "--clean",
        str(clean),
        "--synthetic",
        "gaussian:25",
        "--out",
        str(out),
        *TINY,
        "--batch-size",
        "2",
        "--crop-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
    return runner.invoke(app, args)


def step_records(out: Path) -> dict[int, dict[str, Any]]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if r["event"] == "step"}


def test_three_steps_write_checkpoint(tmp_path: Path, clean_dir: Path) -> None:
    out = tmp_path / "run"
    result = run_train(
        out,
        clean_dir,
        "--steps",
        "3",
        "--workers",
        "1",
        "--sample-every",
        "3",
        "--log-every",
        "1",
        "--checkpoint-every",
        "1",
        "--keep",
        "2",
    )
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["format"] == "invrep-train-checkpoint/1"
    assert ckpt["step"] == 3
    assert len(ckpt["networks"]) == 8
    assert set(ckpt["optimizers"]) == {"generators", "image_discriminators", "representation_discriminator", "warmup"}
    assert ckpt["model_config"]["width"] == 4
    assert ckpt["semantic_enabled"] is False and "no VGG19 weights" in ckpt["semantic_note"]
    assert isinstance(ckpt["rng"]["numpy"][1], list)
    assert ckpt["train_config"]["losses"]["semantic"] == 1.0
    # only the last --keep checkpoints stay
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000003.pt"]
    records = step_records(out)
    assert sorted(records) == [1, 2, 3]
    for key in (
        "d_repr",
        "d_noisy",
        "d_clean",
        "adv_noisy",
        "adv_clean",
        "repr_adv",
        "rec_noisy",
        "rec_clean",
        "cycle_noisy",
        "cycle_clean",
        "latent",
        "background",
        "g_total",
        "lr",
        "step_time",
    ):
        assert key in records[3], key
    assert "semantic" not in records[3]  # disabled, not silently random
    log = (out / "log.jsonl").read_text()
    assert "semantic-consistency loss DISABLED" in log
    assert (out / "samples" / "step_00000003.png").is_file()
    restorer, meta = load_restorer(out / "restorer.safetensors")
    assert meta["step"] == 3
    assert restorer(torch.rand(1, 3, 13, 17)).shape == (1, 3, 13, 17)


def test_resume_gives_the_same_losses(tmp_path: Path, clean_dir: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    # --lr-step 2: the learning rate halves after step 2, so the scheduler state must resume too
    opts = ["--log-every", "1", "--lr-step", "2"]
    assert run_train(full, clean_dir, "--steps", "3", *opts).exit_code == 0
    assert run_train(part, clean_dir, "--steps", "2", *opts).exit_code == 0
    assert torch.load(part / "last.pt", weights_only=True)["step"] == 2
    resumed = run_train(part, clean_dir, "--steps", "3", *opts, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert step_records(full)[1]["lr"] == pytest.approx(1e-4)
    a, b = step_records(full)[3], step_records(part)[3]
    assert a["lr"] == pytest.approx(5e-5) and a["lr_repr"] == pytest.approx(2.5e-5)
    terms = [k for k in a if k not in ("time", "step_time", "event")]
    assert len(terms) > 10
    for key in terms:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    # and the weights end up the same
    wa = torch.load(full / "last.pt", weights_only=True)["networks"]["clean_decoder"]
    wb = torch.load(part / "last.pt", weights_only=True)["networks"]["clean_decoder"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)


def test_semantic_loss_with_vgg_weights(tmp_path: Path, clean_dir: Path) -> None:
    vgg = tmp_path / "vgg.pth"
    torch.save(fake_vgg_state(), vgg)
    out = tmp_path / "run"
    result = run_train(out, clean_dir, "--steps", "1", "--vgg-weights", str(vgg), "--w-semantic", "2")
    assert result.exit_code == 0, result.output
    assert torch.load(out / "last.pt", weights_only=True)["semantic_enabled"] is True
    record = step_records(out)[1]
    assert record["semantic"] > 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    assert start["loss_weights"]["semantic"] == 2.0 and start["semantic_note"].startswith("enabled")


def test_json_output(tmp_path: Path, clean_dir: Path) -> None:
    result = run_train(tmp_path / "run", clean_dir, "--steps", "2", "--json", "--w-semantic", "0")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["step"] == 2 and len(data["step_times"]) == 2 and data["steps_per_s"] > 0
    assert data["semantic_note"] == "disabled: --w-semantic 0"


def test_validation_with_synthetic_noise(tmp_path: Path, clean_dir: Path) -> None:
    write_images(tmp_path / "val", 2, size=(24, 20), seed=5)
    result = run_train(
        tmp_path / "run",
        clean_dir,
        "--steps",
        "2",
        "--val-clean",
        str(tmp_path / "val"),
        "--val-every",
        "2",
        "--w-semantic",
        "0",
    )
    assert result.exit_code == 0, result.output
    vals = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    vals = [r for r in vals if r["event"] == "val"]
    assert len(vals) == 1 and vals[0]["images"] == 2 and 0 < vals[0]["psnr"] < 100 and -1 <= vals[0]["ssim"] <= 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_writes_a_checkpoint(tmp_path: Path, clean_dir: Path, tiny_config: ModelConfig, sig: int) -> None:
    def callback(event: dict[str, Any]) -> None:
        if event["event"] == "step" and event["step"] == 1:
            os.kill(os.getpid(), sig)  # SIGINT is what Ctrl-C sends

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        clean_dir=str(clean_dir),
        synthetic="gaussian:25",
        model=tiny_config,
        steps=5,
        batch_size=2,
        crop_size=16,
        workers=0,
        device="cpu",
        losses=LossWeights(semantic=0.0),
    )
    result = Trainer(cfg, callback).run()
    assert result.interrupted and result.step == 1
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 1


def _exit(result: Any) -> tuple[int, str]:
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("no_images", "no image files"),
        ("too_small", "at least 32x32"),
        ("both", "not both"),
        ("bad_spec", "expected gaussian"),
        ("bad_crop", "multiple of 4"),
        ("resume_nothing", "no checkpoint to resume"),
        ("vgg_missing", "VGG19 weights not found"),
        ("cuda", "no CUDA GPU"),
        ("bad_ema", "--ema must be in [0, 1)"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, clean_dir: Path, case: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("no images here")
    write_images(tmp_path / "small", 2, size=(16, 16))
    out = tmp_path / "run"
    base = ["train", "--out", str(out), *TINY, "--crop-size", "32", "--steps", "1", "--device", "cpu"]
    args = {
        "missing": ["--clean", str(tmp_path / "nope"), "--synthetic", "gaussian:25"],
        "empty": ["--clean", str(clean_dir), "--noisy", str(tmp_path / "empty")],
        "no_images": ["--clean", str(tmp_path / "text"), "--synthetic", "gaussian:25"],
        "too_small": ["--clean", str(clean_dir), "--noisy", str(tmp_path / "small")],
        "both": ["--clean", str(clean_dir), "--noisy", str(clean_dir), "--synthetic", "gaussian:25"],
        "bad_spec": ["--clean", str(clean_dir), "--synthetic", "gauss:25"],
        "bad_crop": ["--clean", str(clean_dir), "--synthetic", "gaussian:25", "--crop-size", "34"],
        "resume_nothing": ["--clean", str(clean_dir), "--synthetic", "gaussian:25", "--resume"],
        "vgg_missing": [
            "--clean",
            str(clean_dir),
            "--synthetic",
            "gaussian:25",
            "--vgg-weights",
            str(tmp_path / "x.pth"),
        ],
        "cuda": ["--clean", str(clean_dir), "--synthetic", "gaussian:25", "--device", "cuda"],
        "bad_ema": ["--clean", str(clean_dir), "--synthetic", "gaussian:25", "--ema", "1"],
    }[case]
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, output = _exit(runner.invoke(app, base + args))
    assert code == 2, output
    assert message in " ".join(output.split()), output
    assert not (out / "last.pt").exists()


def test_existing_run_needs_resume(tmp_path: Path, clean_dir: Path) -> None:
    out = tmp_path / "run"
    assert run_train(out, clean_dir, "--steps", "1", "--w-semantic", "0").exit_code == 0
    code, output = _exit(run_train(out, clean_dir, "--steps", "1", "--w-semantic", "0"))
    assert code == 2 and "--resume" in output


def test_noisy_folder_paired_validation_and_batch_norm_decoder(tmp_path: Path, clean_dir: Path) -> None:
    write_images(tmp_path / "noisy", 3, size=(36, 44), seed=7)
    write_images(tmp_path / "val_clean" / "a", 2, size=(20, 28), seed=8)
    write_images(tmp_path / "val_noisy" / "a", 2, size=(20, 28), seed=9)
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--out", str(out), *TINY,
            "--decoder-norm", "batch", "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--steps", "2",
            "--val-noisy", str(tmp_path / "val_noisy"), "--val-clean", str(tmp_path / "val_clean"), "--val-every", "1",
            "--w-semantic", "0", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "val"] == [1, 2]
    start = next(r for r in records if r["event"] == "start")
    assert start["model_config"]["decoder_norm"] == "batch" and start["validation_images"] == 2
    assert "3 noisy" in start["data"]
    restorer, _ = load_restorer(out / "restorer.safetensors")
    assert restorer.config.decoder_norm == "batch"


def test_restorer_ships_the_moving_average(tmp_path: Path, clean_dir: Path) -> None:
    """restorer.safetensors holds the EMA of E_X and G_Y: it follows the update rule, differs from the
    raw weights, and survives --resume exactly; --ema 0 ships the raw weights."""
    full, part, raw = tmp_path / "full", tmp_path / "part", tmp_path / "raw"
    assert run_train(full, clean_dir, "--steps", "3", "--ema", "0.5").exit_code == 0
    assert run_train(part, clean_dir, "--steps", "2", "--ema", "0.5").exit_code == 0
    resumed = run_train(part, clean_dir, "--steps", "3", "--ema", "0.5", "--resume")
    assert resumed.exit_code == 0, resumed.output
    ckpt = torch.load(full / "last.pt", weights_only=True)
    assert ckpt["ema_decay"] == 0.5
    ema = ckpt["ema"]
    live = {f"clean_decoder.{k}": v for k, v in ckpt["networks"]["clean_decoder"].items()}
    key = next(k for k in live if k.endswith("weight") and live[k].dim() == 4)
    assert not torch.allclose(ema[key], live[key])  # an average, not a copy
    resumed_ema = torch.load(part / "last.pt", weights_only=True)["ema"]
    assert all(torch.allclose(ema[k].float(), resumed_ema[k].float(), atol=1e-6) for k in ema)
    shipped, meta = load_restorer(full / "restorer.safetensors")
    assert meta["ema_decay"] == 0.5
    assert torch.allclose(shipped.state_dict()[key], ema[key])
    from_ckpt, meta_ckpt = load_restorer(full / "last.pt")
    assert meta_ckpt["ema_decay"] == 0.5 and torch.allclose(from_ckpt.state_dict()[key], ema[key])
    raw_from_ckpt, meta_raw = load_restorer(full / "last.pt", ema=False)
    assert meta_raw["ema_decay"] == 0.0 and torch.allclose(raw_from_ckpt.state_dict()[key], live[key])
    assert run_train(raw, clean_dir, "--steps", "1", "--ema", "0").exit_code == 0
    raw_ckpt = torch.load(raw / "last.pt", weights_only=True)
    assert raw_ckpt["ema"] is None
    raw_shipped, _ = load_restorer(raw / "restorer.safetensors")
    raw_live = raw_ckpt["networks"]["clean_decoder"]
    assert torch.allclose(raw_shipped.state_dict()[key], raw_live[key.removeprefix("clean_decoder.")])


def test_update_ema_follows_the_rule(tmp_path: Path, tiny_config: ModelConfig) -> None:
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), clean_dir="unused", model=tiny_config, ema_decay=0.9)
    model = LIRModel(tiny_config, cfg, warmup_steps=0)  # no folders: the model alone
    assert model.ema is not None
    model.step = 1000  # warm-up over: the decay is 0.9
    live = model.nets.restorer().state_dict()
    key = next(k for k, v in live.items() if v.dim() == 4)
    before = model.ema.state_dict()[key].clone()
    with torch.no_grad():
        model.nets.restorer().state_dict(keep_vars=True)[key].add_(1.0)
    target = model.nets.restorer().state_dict()[key]
    model.ema.update(model.step)
    assert torch.allclose(model.ema.state_dict()[key], 0.9 * before + 0.1 * target, atol=1e-6)
    model.step = 0  # first update: decay min(0.9, 1/10) = 0.1, mostly the live weights
    model.ema.update(model.step)
    after = model.ema.state_dict()[key]
    assert torch.allclose(after, 0.1 * (0.9 * before + 0.1 * target) + 0.9 * target, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# stage 1, the warm start


def _stage_args(warmup: int) -> list[str]:
    return ["--config", "lir-lite-unet", "--warmup-steps", str(warmup), "--warmup-lr", "3e-3"]


def test_warm_start_lowers_its_loss(tmp_path: Path, clean_dir: Path) -> None:
    out = tmp_path / "run"
    result = run_train(out, clean_dir, "--steps", "40", *_stage_args(40), "--log-every", "1")
    assert result.exit_code == 0, result.output
    records = step_records(out)
    assert all(r["stage"] == 1 and "warmup_l1" in r and "g_total" not in r for r in records.values())
    first = np.mean([records[s]["warmup_l1"] for s in range(1, 6)])
    last = np.mean([records[s]["warmup_l1"] for s in range(36, 41)])
    assert last < 0.8 * first, (first, last)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["warmup_steps"] == 40 and ckpt["noise_model"]["spec"] == "gaussian:25"
    from safetensors import safe_open

    with safe_open(str(out / "restorer-stage1.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["stage"] == "1" and "gaussian:25" in meta["noise_model"]


def test_resume_across_the_stage_boundary_is_exact(tmp_path: Path, clean_dir: Path) -> None:
    full, part, part3 = tmp_path / "full", tmp_path / "part", tmp_path / "part3"
    opts = ["--log-every", "1", *_stage_args(2)]
    assert run_train(full, clean_dir, "--steps", "4", *opts).exit_code == 0
    for run, stop in ((part, "2"), (part3, "3")):
        assert run_train(run, clean_dir, "--steps", stop, *opts).exit_code == 0
        resumed = run_train(run, clean_dir, "--steps", "4", *opts, "--resume")
        assert resumed.exit_code == 0, resumed.output
    full_records = step_records(full)
    assert [full_records[s]["stage"] for s in (1, 2, 3, 4)] == [1, 1, 2, 2]
    for run in (part, part3):
        records = step_records(run)
        for step in (3, 4):
            a, b = full_records[step], records[step]
            for key in (k for k in a if k not in ("time", "step_time", "event")):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (run.name, step, key)
        wa = torch.load(full / "last.pt", weights_only=True)
        wb = torch.load(run / "last.pt", weights_only=True)
        for name in ("noisy_encoder", "clean_decoder", "noisy_decoder"):
            assert all(torch.allclose(wa["networks"][name][k].float(), wb["networks"][name][k].float(), atol=1e-6)
                       for k in wa["networks"][name])  # fmt: skip
        assert all(torch.allclose(wa["ema"][k].float(), wb["ema"][k].float(), atol=1e-6) for k in wa["ema"])


def _noisy_photos(folder: Path, count: int, sigma: float, suffix: str = ".png") -> None:
    """Smooth ramps with Gaussian noise: flat enough for the noise estimator."""
    from PIL import Image

    rng = np.random.default_rng(11)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:320, 0:320] / 320
    for i in range(count):
        img = np.stack([0.1 + 0.8 * (0.7 * xx + 0.3 * yy) * (0.6 + 0.2 * c) for c in range(3)], -1)
        img = img + rng.standard_normal(img.shape) * sigma
        Image.fromarray(np.clip(np.round(img * 255), 0, 255).astype(np.uint8)).save(folder / f"n{i}{suffix}")


def test_noise_model_fitted_to_the_noisy_folder(tmp_path: Path, clean_dir: Path) -> None:
    _noisy_photos(tmp_path / "noisy", 3, sigma=0.04)
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--out", str(out), *TINY,
            *_stage_args(2), "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--steps", "3",
            "--w-semantic", "0", "--log-every", "1", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    fitted = torch.load(out / "last.pt", weights_only=True)["noise_model"]["fitted"]
    assert len(fitted) == 3
    for fit in fitted:
        std = np.sqrt(np.array(fit["gain"]) * 0.5 + np.array(fit["floor"]))  # the fit itself, before the level range
        assert np.allclose(std, 0.04, rtol=0.15), std
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "noise_model" and "fitted per image on 3 images" in r["summary"] for r in records)


def test_a_heavy_noise_folder_trains(tmp_path: Path) -> None:
    """std 60 of 255 clips a sample in nearly every block: train stopped with "cannot fit a noise
    model" before blocks with a few clipped samples were read."""
    _noisy_photos(tmp_path / "noisy", 2, sigma=60 / 255)
    _noisy_photos(tmp_path / "clean", 2, sigma=0.0)
    out = tmp_path / "run"
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), "--out", str(out), *TINY,
            *_stage_args(1), "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--steps", "1",
            "--w-semantic", "0", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    model = torch.load(out / "last.pt", weights_only=True)["noise_model"]
    assert model["clip_share"] > 0
    std = [np.sqrt(np.mean(f["gain"]) * 0.5 + np.mean(f["floor"])) for f in model["fitted"]]
    assert np.allclose(std, 60 / 255, rtol=0.15), std


def test_a_white_folders_blur_is_read_back_on_the_clean_folder(tmp_path: Path) -> None:
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.04)
    _noisy_photos(tmp_path / "clean", 2, sigma=0.0)
    base = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), *TINY, *_stage_args(1),
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--steps", "1", "--w-semantic", "0",
            "--quiet"]  # fmt: skip
    models = {}
    for name, flag in (("on", []), ("off", ["--no-blur-readback"])):
        result = runner.invoke(app, [*base, "--out", str(tmp_path / name), *flag])
        assert result.exit_code == 0, result.output
        models[name] = torch.load(tmp_path / name / "last.pt", weights_only=True)["noise_model"]
    assert "white blur read back on 2 clean images" in models["on"]["level_note"]
    assert models["off"]["level_note"] == ""
    assert len({f["blur"] for f in models["on"]["fitted"]}) == 1
    assert [f["gain"] for f in models["on"]["fitted"]] == [f["gain"] for f in models["off"]["fitted"]]


def test_jpeg_noisy_folder_gives_jpeg_fits_and_a_fraction(tmp_path: Path, clean_dir: Path) -> None:
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.03, suffix=".jpg")
    base = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), *TINY, *_stage_args(1),
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--steps", "1", "--w-semantic", "0",
            "--quiet"]  # fmt: skip
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--jpeg-fraction", "0.25"])
    assert result.exit_code == 0, result.output
    model = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["noise_model"]
    assert model["jpeg_fraction"] == 0.25 and all(f["jpeg_quality"] == 75 for f in model["fitted"])
    assert "JPEG fits corrected by synthesis" in model["level_note"]
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--no-match-levels"])
    assert result.exit_code == 0
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["noise_model"]["level_note"] == ""
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--jpeg-fraction", "1.5"]).exit_code == 2


def test_noisy_folder_without_flat_areas_is_a_clear_error(tmp_path: Path, clean_dir: Path) -> None:
    write_images(tmp_path / "noisy", 2, size=(36, 44), seed=7)
    args = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), "--out", str(tmp_path / "run"),
            *TINY, *_stage_args(2), "--crop-size", "32", "--steps", "3", "--w-semantic", "0", "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "cannot fit a noise model" in result.output and "--warmup-steps 0" in result.output


def test_init_weights_starts_from_a_restorer_file(tmp_path: Path, clean_dir: Path) -> None:
    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.config import model_preset
    from invrep_cli.models import build_restorer

    torch.manual_seed(123)
    config = model_preset("lir-lite-unet", width=4, disc_width=4, n_res_blocks=1, disc_scales=2)
    source = build_restorer(config)
    weights = save_restorer(source, tmp_path / "start.safetensors")
    out = tmp_path / "run"
    result = run_train(out, clean_dir, "--steps", "1", "--warmup-steps", "1", "--warmup-lr", "1e-12",
                       "--init-weights", str(weights))  # fmt: skip
    assert result.exit_code == 0, result.output
    nets = torch.load(out / "last.pt", weights_only=True)["networks"]
    for key, value in source.noisy_encoder.state_dict().items():
        if value.is_floating_point() and "running" not in key:  # BatchNorm statistics move in train mode
            assert torch.allclose(nets["noisy_encoder"][key], value, atol=1e-6), key
    both = run_train(tmp_path / "other", clean_dir, "--steps", "1", "--init-weights", str(weights), "--resume")
    assert both.exit_code == 2
    # resumed twice, the run still took its networks from the file (its --config is not the
    # command's); the file gave no discriminators: past stage 2's first step what they read is the run's
    run = ["--warmup-steps", "1", "--warmup-lr", "1e-12", "--resume"]
    for steps in ("2", "3"):
        resumed = run_train(out, clean_dir, "--steps", steps, *run)
        assert resumed.exit_code == 0, resumed.output
    changed = run_train(out, clean_dir, "--steps", "4", *run, "--disc-high-pass", "20")
    assert changed.exit_code == 2
    assert "--disc-high-pass" in changed.output and "--config" not in changed.output


def test_gray_crops_carry_the_same_noise_in_every_channel() -> None:
    from invrep_cli.config import model_preset
    from invrep_cli.data import parse_noise
    from invrep_cli.models import build_models
    from invrep_cli.noise import NoiseModel
    from invrep_cli.objectives import TrainingForward, warm_start_objective

    config = model_preset("lir-lite-unet", width=4, disc_width=4, n_res_blocks=1, disc_scales=2)
    nets = build_models(config)
    forward = TrainingForward(dict(nets.items()))
    clean = torch.rand(6, 3, 16, 16) * 2 - 1
    model = NoiseModel(spec=parse_noise("gaussian:25"))
    _, images = warm_start_objective(forward, model, clean, gray_fraction=1.0)
    for key in ("x", "y"):
        assert torch.equal(images[key][:, 0], images[key][:, 1]) and torch.equal(images[key][:, 1], images[key][:, 2])
    assert not torch.equal(images["x"], images["y"])
    _, colour = warm_start_objective(forward, model, clean, gray_fraction=0.0)
    assert not torch.equal(colour["x"][:, 0], colour["x"][:, 1])


def test_noise_scale_reaches_the_fitted_model_and_bad_ranges_are_refused(tmp_path: Path, clean_dir: Path) -> None:
    _noisy_photos(tmp_path / "noisy", 2, sigma=0.04)
    base = ["train", "--noisy", str(tmp_path / "noisy"), "--clean", str(clean_dir), *TINY, *_stage_args(1),
            "--batch-size", "2", "--crop-size", "32", "--workers", "0", "--w-semantic", "0", "--quiet"]  # fmt: skip
    result = runner.invoke(app, [*base, "--steps", "1", "--out", str(tmp_path / "a"), "--noise-scale", "1-3"])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["noise_model"]["level_range"] == [1.0, 3.0]
    # resumed without the option (auto), a run keeps the spread it had; another spread is refused
    result = runner.invoke(app, [*base, "--steps", "2", "--out", str(tmp_path / "a"), "--resume"])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=True)["noise_model"]["level_range"] == [1.0, 3.0]
    again = [*base, "--steps", "3", "--out", str(tmp_path / "a"), "--resume"]
    refused = runner.invoke(app, [*again, "--noise-scale", "1-2"])
    assert refused.exit_code == 2 and "--noise-scale" in refused.output
    # the default (auto) draws these photos' white noise at the narrow spread
    result = runner.invoke(app, [*base, "--steps", "1", "--out", str(tmp_path / "auto")])
    assert result.exit_code == 0, result.output
    assert torch.load(tmp_path / "auto" / "last.pt", weights_only=True)["noise_model"]["level_range"] == [0.8, 1.25]
    for bad in ("3-1", "x", "0-2"):
        bad_run = [*base, "--steps", "1", "--out", str(tmp_path / bad), "--noise-scale", bad]
        assert runner.invoke(app, bad_run).exit_code == 2
