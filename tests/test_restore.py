"""`invrep restore` end to end on 32x32 images: folders, records and resume, bad files, exit codes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from invrep_cli import imageio
from invrep_cli.backends import make_backend
from invrep_cli.checkpoint import save_restorer
from invrep_cli.cli import app
from invrep_cli.config import ModelConfig
from invrep_cli.devices import cpu_bf16_unsupported
from invrep_cli.errors import UsageError
from invrep_cli.imageio import read_image
from invrep_cli.inputs import parse_shard, shard_from_env
from invrep_cli.models import build_restorer
from invrep_cli.restore import RestoreConfig, choose_tile, plan_restore, restore_pixels, run_restore
from tests.conftest import write_images

runner = CliRunner()


@pytest.fixture
def weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    torch.manual_seed(0)
    return save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["restore", *map(str, args), "--threads", "1"])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str | Path) -> tuple[int, dict]:
    code, out, err = invoke(*args, "--json")
    assert out.strip(), err
    return code, json.loads(out)


def test_folder_keeps_subfolders_gray_and_alpha(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    write_images(src, 2)
    write_images(src / "sub" / "déjà vu", 1, mode="L")  # non-ASCII folder names too
    write_images(src / "rgba", 1, mode="RGBA")
    (src / "notes.txt").write_text("not an image")
    code, summary = run_json(src, tmp_path / "out", "--weights", weights)
    assert code == 0 and summary["processed"] == 4 and summary["failed"] == []
    assert [Path(i["path"]).name for i in summary["ignored"]] == ["notes.txt"]
    # precision auto on CPU: bf16 for 8-bit outputs where the CPU has bf16 instructions, else fp32
    auto = "fp32" if cpu_bf16_unsupported() else "bf16 (8-bit), fp32 (16-bit)"
    assert summary["backend"] == "torch" and summary["precision"] == auto and summary["device"].startswith("cpu")
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "img_000.png", "img_001.png", "rgba/img_000.png", "sub/déjà vu/img_000.png"
    ]
    assert Image.open(out / "sub/déjà vu/img_000.png").mode == "L"
    rgba_in, rgba_out = Image.open(src / "rgba/img_000.png"), Image.open(out / "rgba/img_000.png")
    assert rgba_out.mode == "RGBA" and np.array_equal(np.asarray(rgba_in)[..., 3], np.asarray(rgba_out)[..., 3])
    restored = np.asarray(Image.open(out / "img_000.png")).astype(int)
    assert restored.shape == (32, 32, 3) and np.abs(restored - np.asarray(Image.open(src / "img_000.png"))).max() > 0


def test_human_output_and_exit_code(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1)
    code, out, _ = invoke(tmp_path / "in", tmp_path / "out", "--weights", weights, "--tile", "64")
    assert code == 0
    assert "device" in out and "precision" in out and "tile 64 px" in out and "processed" in out
    assert "images up to 200 MP" in out
    code, out, err = invoke(tmp_path / "in", tmp_path / "quiet", "--weights", weights, "--quiet")
    assert code == 0 and out == "" and err == ""


def test_tiled_run_equals_whole_image_run(tmp_path: Path, weights: Path) -> None:
    arr = np.random.default_rng(3).integers(0, 256, (101, 143, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "odd.png")
    for name, tile in (("whole", "0"), ("tiled", "64")):
        code, summary = run_json(tmp_path / "in", tmp_path / name, "--weights", weights, "--tile", tile)
        assert code == 0 and summary["processed"] == 1
    whole = np.asarray(Image.open(tmp_path / "whole" / "odd.png")).astype(int)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "odd.png")).astype(int)
    assert np.abs(whole - tiled).max() <= 1


def _bad_files(folder: Path) -> set[str]:
    good = (folder / "img_000.png").read_bytes()
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello, I am not a PNG")
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.png").write_bytes(good[:30] + bytes(len(good) - 30))
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(folder / "float.tif")  # unsupported mode F
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(folder / "bomb.png")
    return {"zero.png", "text.png", "truncated.png", "corrupt.png", "float.tif", "bomb.png"}


def test_bad_files_fail_alone(tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    write_images(src, 2)
    bad = _bad_files(src)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 64 * 64 - 1)  # bomb.png is over, the 32x32 images are not
    code, summary = run_json(src, tmp_path / "out", "--weights", weights)
    assert code == 1 and summary["processed"] == 2
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(failed) == bad
    assert "decompression-bomb" in failed["bomb.png"] and "empty" in failed["zero.png"]
    assert "unsupported pixel mode" in failed["float.tif"]
    listed = (tmp_path / "out" / ".invrep-failures.txt").read_text(encoding="utf-8")
    assert all(name in listed for name in bad)
    # human output names each file and its reason on stderr
    code, _, err = invoke(src, tmp_path / "out2", "--weights", weights)
    assert code == 1 and "truncated.png" in err and "failed" in err


def test_usage_errors_exit_2(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    write_images(src, 1)
    cases = [
        [tmp_path / "missing", tmp_path / "out", "--weights", weights],
        [src, src, "--weights", weights],
        [src, src / "out", "--weights", weights],
        [src / "img_000.png", src / "img_000.png", "--weights", weights],
        [src, tmp_path / "out", "--weights", tmp_path / "nope.safetensors"],
        [src, tmp_path / "out", "--weights", weights, "--precision", "fp16", "--device", "cpu"],
        [src, tmp_path / "out", "--weights", weights, "--overwrite", "--skip-existing"],
        [src, tmp_path / "out", "--weights", weights, "--shard", "2/2"],
        [src, tmp_path / "out", "--weights", weights, "--format", "gif"],
        [src, tmp_path / "out", "--weights", weights, "--tile", "-1"],
    ]
    if not torch.cuda.is_available():
        cases.append([src, tmp_path / "out", "--weights", weights, "--device", "cuda"])
    for args in cases:
        code, _, err = invoke(*args)
        assert code == 2, (args, err)
        assert "error" in err
    assert sorted(p.name for p in src.iterdir()) == ["img_000.png"]  # nothing written beside the input


def test_bf16_refused_in_one_line_on_a_cpu_without_it(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import invrep_cli.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma"})
    src = tmp_path / "in"
    write_images(src, 1)
    code, _, err = invoke(src, tmp_path / "out", "--weights", weights, "--precision", "bf16", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bf16 on CPU is refused" in err and "--precision fp32" in err
    assert not (tmp_path / "out").exists()


def test_resume_skips_only_what_matches(tmp_path: Path, weights: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    args = [src, out, "--weights", weights]
    assert run_json(*args)[1]["processed"] == 3
    second = run_json(*args, "--skip-existing")[1]
    assert (second["processed"], second["skipped"]) == (0, 3)
    assert run_json(*args)[1]["skipped"] == 3  # the default behaves the same
    # a setting that changes pixels re-processes everything
    assert run_json(*args, "--tile-overlap", "8")[1]["processed"] == 3
    assert run_json(*args, "--tile-overlap", "8")[1]["processed"] == 0
    # a changed input, a deleted output and a replaced output: only those three files
    write_images(tmp_path / "other", 1, seed=9)
    (src / "img_000.png").write_bytes((tmp_path / "other" / "img_000.png").read_bytes())
    (out / "img_001.png").unlink()
    (out / "img_002.png").write_bytes(b"someone else's file")
    third = run_json(*args, "--tile-overlap", "8", "--skip-existing")[1]
    assert (third["processed"], third["skipped"]) == (3, 0)
    # new weights re-process; --overwrite forces everything
    other = build_restorer(ModelConfig(name="t", width=4, n_res_blocks=1))
    other_weights = save_restorer(other, tmp_path / "v.safetensors")
    assert run_json(src, out, "--weights", other_weights, "--tile-overlap", "8")[1]["processed"] == 3
    assert run_json(src, out, "--weights", other_weights, "--tile-overlap", "8", "--overwrite")[1]["processed"] == 3
    record = json.loads((out / ".invrep-restore.json").read_text(encoding="utf-8"))
    entry = record["entries"]["img_000.png"]
    assert entry["settings"]["overlap"] == 8 and len(entry["input_sha256"]) == 64


def test_format_change_writes_new_outputs(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1)
    assert run_json(tmp_path / "in", tmp_path / "out", "--weights", weights)[1]["processed"] == 1
    summary = run_json(tmp_path / "in", tmp_path / "out", "--weights", weights, "--format", "jpg")[1]
    assert summary["processed"] == 1 and (tmp_path / "out" / "img_000.jpg").is_file()


def test_crash_mid_write_leaves_no_partial_output_and_resumes(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    real_save = Image.Image.save
    def crash_on_second(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        # by name, not by call order: the two writes may run in either order in the writer threads
        if Path(str(fp)).name.startswith(".img_001."):
            Path(str(fp)).write_bytes(b"\x89PNG\r\n\x1a\n half an image")
            raise OSError("killed mid-write")
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", crash_on_second)
    code, summary = run_json(src, out, "--weights", weights)
    assert code == 1 and summary["processed"] == 1 and "killed mid-write" in summary["failed"][0]["reason"]
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith(".invrep-"))
    assert written == ["img_000.png"]  # no partial file, no temporary left behind
    monkeypatch.setattr(Image.Image, "save", real_save)
    code, summary = run_json(src, out, "--weights", weights)
    assert code == 0 and (summary["processed"], summary["skipped"]) == (1, 1)
    assert not (out / ".invrep-failures.txt").exists()


def test_shards_split_the_work_and_share_records(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 5)
    first = run_json(src, out, "--weights", weights, "--shard", "0/2")[1]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = run_json(src, out, "--weights", weights)[1]  # torchrun's environment
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert (first["processed"], second["processed"]) == (3, 2) and second["shard"] == "1/2"
    assert len(list(out.glob("*.png"))) == 5
    records = {p.name for p in out.glob(".invrep-restore*.json")}
    assert records == {".invrep-restore.0of2.json", ".invrep-restore.1of2.json"}
    assert run_json(src, out, "--weights", weights)[1]["skipped"] == 5


def test_single_file_and_glob_inputs(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    write_images(src, 2)
    write_images(src / "sub", 1)
    code, summary = run_json(src / "img_001.png", tmp_path / "one.png", "--weights", weights)
    assert code == 0 and (tmp_path / "one.png").is_file() and summary["processed"] == 1
    code, summary = run_json(src / "img_001.png", tmp_path / "dir", "--weights", weights, "--format", "tif")
    assert code == 0 and read_image(tmp_path / "dir" / "img_001.tif").bit_depth == 8
    code, summary = run_json(f"{src}/**/*.png", tmp_path / "globbed", "--weights", weights)
    assert code == 0 and summary["processed"] == 3 and (tmp_path / "globbed" / "sub" / "img_000.png").is_file()


def test_out_of_memory_retries_with_smaller_tiles(tmp_path: Path, tiny_config: ModelConfig) -> None:
    write_images(tmp_path / "in", 1, size=(64, 64))
    weights = save_restorer(build_restorer(tiny_config), tmp_path / "m.safetensors", meta={"context_margin": 8})
    backend = make_backend(weights, device="cpu")
    real_run = backend.run

    def limited(batch: np.ndarray) -> np.ndarray:
        if max(batch.shape[-2:]) > 48:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_run(batch)

    backend.run = limited  # type: ignore[method-assign]
    messages: list[str] = []
    config = RestoreConfig(str(tmp_path / "in"), str(tmp_path / "out"), tile=0, tile_overlap=8)
    summary = run_restore(plan_restore(config, backend), on_message=messages.append)
    assert summary.processed == 1 and summary.failed == []
    assert any("out of memory" in m for m in messages) and summary.tile["final_tile"] == 32


def test_auto_tile_and_pixel_api(weights: Path) -> None:
    backend = make_backend(weights, device="cpu")
    choice = choose_tile(backend, overlap=16)
    assert choice.tile >= 64 and choice.tile % 32 == 0 and choice.batch_size == 1 and "free" in choice.reason
    pixels = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    assert restore_pixels(pixels, backend, tile=16).shape == (20, 30, 3)  # the pure function takes any tile


def test_shard_parsing() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/3"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None and shard_from_env({}) is None


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_outputs_and_weights_get_normal_permissions(tmp_path: Path, tiny_config: ModelConfig) -> None:
    old = os.umask(0o022)
    try:
        weights = save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")
        write_images(tmp_path / "in", 1)
        code, _ = run_json(tmp_path / "in", tmp_path / "out", "--weights", weights)
    finally:
        os.umask(old)
    assert code == 0
    for path in (weights, tmp_path / "out" / "img_000.png", tmp_path / "out" / ".invrep-restore.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


_KILLED_RUN = """
import os, signal, sys, time
from pathlib import Path
from invrep_cli.backends import make_backend
from invrep_cli.record import RestoreRecord
from invrep_cli.restore import RestoreConfig, plan_restore, run_restore
backend = make_backend(sys.argv[1], device="cpu", threads=1)
real_run, calls = backend.run, [0]
def run(batch):
    calls[0] += 1
    if calls[0] == int(sys.argv[4]):
        # only this image is in flight once the previous one is on disk: give its record a few
        # seconds to follow (it follows the rename at once; before the fix it never did by now)
        previous = Path(sys.argv[3]) / f"img_{calls[0] - 2:03d}.png"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and previous.name not in RestoreRecord(previous.parent).known:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_run(batch)
backend.run = run
run_restore(plan_restore(RestoreConfig(sys.argv[2], sys.argv[3], tile=0), backend))
"""


def test_kill_9_loses_at_most_the_image_in_flight(tmp_path: Path, weights: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 4)
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    # killed while restoring the third image: the first two are written and must be recorded
    proc = subprocess.run([sys.executable, str(script), str(weights), str(src), str(out), "3"], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.glob("img_*.png")) == ["img_000.png", "img_001.png"]
    backend = make_backend(weights, device="cpu", threads=1)
    summary = run_restore(plan_restore(RestoreConfig(str(src), str(out), tile=0), backend))
    assert (summary.processed, summary.skipped) == (2, 2)


def test_a_run_removes_its_own_leftover_part_files(tmp_path: Path, weights: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 2)
    out.mkdir()
    ours = [out / ".img_000.x1y2z3w4.png.part", out / "..invrep-restore.0of2.ab12cd34.json.part"]
    foreign = [out / ".holiday.x1y2z3w4.png.part", out / ".img_001.x1y2z3w4.png.part"]
    for path in ours + foreign:
        path.write_bytes(b"")
    # shard 0/2 owns img_000 only: another shard's (or another tool's) temporaries are left alone
    code, _ = run_json(src, out, "--weights", weights, "--shard", "0/2")
    assert code == 0
    assert sorted(p.name for p in out.glob(".*.part")) == sorted(p.name for p in foreign)
    code, _ = run_json(src, out, "--weights", weights)
    assert [p.name for p in out.glob(".*.part")] == [".holiday.x1y2z3w4.png.part"]


def test_tiles_below_the_minimum_are_refused(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1)
    code, _, err = invoke(tmp_path / "in", tmp_path / "out", "--weights", weights, "--tile", "3")
    assert code == 2 and "--tile 3" in err and "64" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="--tile 63"):
        RestoreConfig(tile=63)
    assert RestoreConfig(tile=0).tile == 0 and RestoreConfig(tile=64).tile == 64


def test_one_pixel_limit_quoted_the_same_way_and_raised_by_an_option(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1, size=(100, 100))  # 0.01 MP
    code, summary = run_json(tmp_path / "in", tmp_path / "out", "--weights", weights, "--max-megapixels", "0.005")
    assert code == 1 and "over the 0.005 MP decompression-bomb limit" in summary["failed"][0]["reason"]
    assert "--max-megapixels" in summary["failed"][0]["reason"]
    code, summary = run_json(tmp_path / "in", tmp_path / "out", "--weights", weights, "--max-megapixels", "0.02")
    assert code == 0 and summary["processed"] == 1
    # Pillow's own limit (other numbers, not raisable per run) never fires first
    assert Image.MAX_IMAGE_PIXELS is None
    data = (tmp_path / "in" / "img_000.png").read_bytes()
    assert imageio.decode_image(data, "x.png", 10**12).samples.dtype == np.uint8


def test_restoring_a_large_image_allocates_only_its_output(weights: Path) -> None:
    import tracemalloc

    backend = make_backend(weights, device="cpu", threads=1)
    samples = np.random.default_rng(0).integers(0, 256, (1024, 384, 3), dtype=np.uint8)
    identity_backend_run = backend.run
    backend.run = lambda batch: batch  # type: ignore[method-assign]  # memory of the tiling, not the network
    tracemalloc.start()
    try:
        out = restore_pixels(samples, backend, tile=64, overlap=16, out_dtype=np.uint8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        backend.run = identity_backend_run  # type: ignore[method-assign]
    assert out.dtype == np.uint8 and np.array_equal(out, samples)
    # the output (1x the input's bytes) plus a band one tile row high; float32 copies of the whole
    # image (input, padded, transposed, output, weights) were 17x
    assert peak < 2.5 * samples.nbytes, peak / samples.nbytes


def test_every_entry_is_processed_ignored_or_failed(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    write_images(src, 2)
    write_images(src / "sub", 1)
    (src / "loop.png").symlink_to("loop.png")  # a symlink loop with an image name
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")  # broken
    (src / "sub" / "back").symlink_to("..")  # a folder loop
    (src / "readme.txt").write_text("hi")
    (src / ".DS_Store").write_bytes(b"")
    os.mkfifo(src / "pipe.png")
    code, summary = run_json(src, tmp_path / "out", "--weights", weights)
    entries = 9  # img_000, img_001, sub/img_000, loop, gone, back, readme, .DS_Store, pipe
    assert summary["processed"] + len(summary["failed"]) + len(summary["ignored"]) == entries
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    ignored = {Path(f["path"]).name: f["reason"] for f in summary["ignored"]}
    assert code == 1 and summary["processed"] == 3
    assert "symlink loop" in failed["loop.png"] and "broken symlink" in failed["gone.png"]
    assert "already scanned" in ignored["back"] and "not an image" in ignored["readme.txt"]
    assert "hidden" in ignored[".DS_Store"] and "not a regular file" in ignored["pipe.png"]


def test_exif_note_only_when_there_is_exif(tmp_path: Path, weights: Path) -> None:
    import tifffile

    (tmp_path / "in").mkdir()
    arr = np.random.default_rng(0).integers(0, 65536, (24, 20, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in" / "scan.tif", arr, photometric="rgb")  # no EXIF, only TIFF tags
    code, summary = run_json(tmp_path / "in", tmp_path / "out", "--weights", weights)
    assert code == 0 and not any("EXIF" in note for note in summary["notes"]), summary["notes"]
    assert read_image(tmp_path / "out" / "scan.tif").bit_depth == 16
