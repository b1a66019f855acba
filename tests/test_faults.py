"""Issue 18: the faults a new user hit, one test (or a few) per row of its table, each failing on the
code before the fix: a read-only or full output folder, damaged ONNX weights, outputs that are not
images, globs that read their own outputs, Ctrl-C in a folder run, tidy output and CPU precision."""

from __future__ import annotations

import errno
import json
import os
import shlex
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from invrep_cli.backends import TorchBackend, make_backend
from invrep_cli.checkpoint import save_restorer
from invrep_cli.cli import app
from invrep_cli.config import ModelConfig
from invrep_cli.export import _write_metadata, export_onnx
from invrep_cli.inputs import glob_matches
from invrep_cli.models import build_restorer
from invrep_cli.onnx_backend import GRAPH_DIGEST_KEY
from invrep_cli.restore import RestoreConfig, plan_restore, run_restore
from tests.conftest import write_images

runner = CliRunner()
#: what Rich draws tables and panels with; none of it may reach a pipe
BOX_DRAWING = set("─━│┃┌┐└┘├┤┬┴┼╭╮╯╰═║╔╗╚╝┏┓┗┛")



def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["restore", *map(str, args), "--threads", "1"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _refuse_files_in(folder: Path, monkeypatch: pytest.MonkeyPatch, code: int, allow: tuple[str, ...] = ()) -> None:
    """Make creating files in ``folder`` (and below) fail with ``code``, as a read-only mount or a
    full disk does; names starting with one of ``allow`` still work. Permission bits cannot show
    this where the tests run as root, which ignores them."""
    real = tempfile.mkstemp

    def mkstemp(suffix: str | None = None, prefix: str | None = None, dir: str | None = None, text: bool = False):  # noqa: A002, ANN202
        where = Path(dir).resolve() if dir is not None else None
        inside = where is not None and (where == folder.resolve() or folder.resolve() in where.parents)
        if inside and not (prefix or "").startswith(allow):
            raise OSError(code, os.strerror(code))
        return real(suffix, prefix, dir, text)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# --------------------------------------------------------------------------- row 1: read-only / full OUT


def test_read_only_output_folder_is_refused_before_the_first_image(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_images(tmp_path / "in", 3)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    _refuse_files_in(read_only, monkeypatch, errno.EROFS)
    for out in (read_only, read_only / "new" / "out"):  # existing, and to be made inside it
        code, stdout, stderr = invoke(tmp_path / "in", out, "--weights", weights)
        assert code == 2 and stdout == ""
        assert stderr.count("\n") == 1 and "cannot be written" in stderr and "Read-only file system" in stderr
        assert "nothing was restored" in stderr
    assert list(read_only.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_output_folder_without_write_permission_is_refused(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1)
    (tmp_path / "locked").mkdir(mode=0o555)
    code, _, stderr = invoke(tmp_path / "in", tmp_path / "locked", "--weights", weights)
    assert code == 2 and "cannot be written" in stderr


def test_disk_full_mid_run_fails_those_images_keeps_what_was_written(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    out.mkdir()
    # the probe and the first image get through, then the disk is full: the other two images, the
    # record and the failures list all fail to be written
    _refuse_files_in(out, monkeypatch, errno.ENOSPC, allow=(".invrep-probe-", ".img_000."))
    code, stdout, stderr = invoke(src, out, "--weights", weights)
    assert code == 1
    assert "restore summary" in stdout and "processed" in stdout  # the summary still prints
    assert stderr.count("No space left on device") >= 2 and "Traceback" not in stderr
    assert "list of failures cannot be written" in stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["img_000.png"]
    monkeypatch.undo()
    # nothing already written is lost: its journal line is replayed, so it is skipped
    code, stdout, _ = invoke(src, out, "--weights", weights, "--json")
    summary = json.loads(stdout)
    assert code == 0 and (summary["processed"], summary["skipped"]) == (2, 1)


# --------------------------------------------------------------------------- rows 2-3: damaged ONNX


def _flip_bytes_in_weights(path: Path, count: int) -> Path:
    """Flip ``count`` bytes inside the largest initializer's data, as a bad disk or download does."""
    data = bytearray(path.read_bytes())
    biggest = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
    start = bytes(data).find(biggest.raw_data)
    assert start > 0 and len(biggest.raw_data) > count
    for i in range(count):
        data[start + i * (len(biggest.raw_data) // count)] ^= 0xFF
    damaged = path.with_name(f"damaged{count}.onnx")
    damaged.write_bytes(bytes(data))
    return damaged


@pytest.mark.parametrize("flipped", [3, 200])
def test_onnx_with_flipped_bytes_is_refused(tmp_path: Path, onnx_file: Path, flipped: int) -> None:
    write_images(tmp_path / "in", 1)
    damaged = _flip_bytes_in_weights(onnx_file, flipped)
    code, stdout, stderr = invoke(tmp_path / "in", tmp_path / "out", "--weights", damaged)
    assert code == 2 and stdout == "" and "damaged" in stderr and GRAPH_DIGEST_KEY in stderr
    assert not (tmp_path / "out").exists()


def test_export_writes_the_digest_and_an_older_graph_loads_with_a_note(tmp_path: Path, onnx_file: Path) -> None:
    model = onnx.load(str(onnx_file))
    assert any(p.key == GRAPH_DIGEST_KEY and len(p.value) == 64 for p in model.metadata_props)
    older = [p for p in model.metadata_props if p.key != GRAPH_DIGEST_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(older)
    old_file = tmp_path / "older.onnx"
    onnx.save(model, str(old_file))
    write_images(tmp_path / "in", 1)
    code, stdout, _ = invoke(tmp_path / "in", tmp_path / "out", "--weights", old_file, "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["processed"] == 1
    assert any("loaded unchecked" in note and GRAPH_DIGEST_KEY in note for note in summary["notes"])


def test_int8_graph_carries_the_digest_of_what_it_holds(tmp_path: Path, weights: Path) -> None:
    from invrep_cli.onnx_backend import OnnxBackend
    from invrep_cli.quantize import Calibration

    write_images(tmp_path / "calib", 2, size=(48, 48))
    out = tmp_path / "int8.onnx"
    export_onnx(weights, out, check_sizes=((1, 3, 19, 21),), threads=1, min_psnr=0.0,
                calibration=Calibration(str(tmp_path / "calib"), crops=2, crop_size=24))
    backend = OnnxBackend(out, device="cpu", threads=1)  # verified, no note
    assert backend.precision == "int8" and backend.notes == []


# --------------------------------------------------------------------------- row 3: outputs that are not images


def test_weights_that_give_nan_fail_the_image_instead_of_writing_black(
    tmp_path: Path, tiny_config: ModelConfig
) -> None:
    restorer = build_restorer(tiny_config)
    with torch.no_grad():
        next(restorer.parameters()).fill_(float("nan"))  # a run that diverged, saved as it was
    broken = save_restorer(restorer, tmp_path / "nan.safetensors")
    write_images(tmp_path / "in", 2)
    code, stdout, stderr = invoke(tmp_path / "in", tmp_path / "out", "--weights", broken, "--precision", "fp32")
    assert code == 1 and "NaN/inf" in stderr and "not written" in stderr
    assert list((tmp_path / "out").glob("*.png")) == []


def _nan_graph(onnx_file: Path, tmp_path: Path) -> Path:
    """A graph whose digest matches (re-written as export writes it) but whose weights are NaN."""
    model = onnx.load(str(onnx_file))
    target = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    values = numpy_helper.to_array(target).copy()
    values[...] = np.nan
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    _write_metadata(path, {})
    return path


@pytest.mark.parametrize("backend_name", ["torch", "onnx"])
@pytest.mark.parametrize("bad", ["nan", "range"])
def test_every_backend_output_is_checked(
    tmp_path: Path, weights: Path, onnx_file: Path, backend_name: str, bad: str
) -> None:
    src = tmp_path / "in"
    write_images(src, 3)
    if backend_name == "onnx" and bad == "nan":
        backend = make_backend(_nan_graph(onnx_file, tmp_path), "onnx", device="cpu", threads=1)
    else:
        backend = make_backend(weights if backend_name == "torch" else onnx_file, backend_name, "cpu", "fp32", 1)
        real_run = backend.run
        calls = {"n": 0}

        def broken(batch: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            y = real_run(batch)
            if calls["n"] == 2:  # the second image only
                y = np.full_like(y, np.nan) if bad == "nan" else y * 4.0 - 1.5
            return y

        backend.run = broken  # type: ignore[method-assign]
    summary = run_restore(plan_restore(RestoreConfig(str(src), str(tmp_path / "out"), tile=0), backend))
    reason = "NaN/inf" if bad == "nan" else "far outside the valid range"
    assert summary.failed and all(reason in f["reason"] for f in summary.failed)
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    failed = sorted(Path(f["path"]).name for f in summary.failed)
    assert summary.processed == len(written) == 3 - len(failed) and not set(written) & set(failed)


# --------------------------------------------------------------------------- rows 4-5: globs and OUT


def test_glob_into_its_own_folder_is_refused(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "f1", 2)
    before = {p: p.read_bytes() for p in (tmp_path / "f1").iterdir()}
    code, stdout, stderr = invoke(f"{tmp_path}/f1/*.png", tmp_path / "f1", "--weights", weights)
    assert code == 2 and stdout == "" and "read as inputs" in stderr
    assert {p: p.read_bytes() for p in (tmp_path / "f1").iterdir()} == before


def test_recursive_glob_reaching_out_is_refused_on_the_first_run(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "f2" / "a", 2)
    code, _, stderr = invoke(f"{tmp_path}/f2/**/*.png", tmp_path / "f2" / "out", "--weights", weights)
    assert code == 2 and "read as inputs" in stderr and not (tmp_path / "f2" / "out").exists()
    # what the pattern cannot reach is fine: a sibling folder, or a folder below its base that a
    # one-level pattern does not descend into
    for out in (tmp_path / "f2" / "out", tmp_path / "f2" / "a" / "restored"):
        code, _, _ = invoke(f"{tmp_path}/f2/a/*.png", out, "--weights", weights)
        assert code == 0 and len(list(out.glob("*.png"))) == 2
    # OUT holding the inputs is refused as for a folder IN, even when the outputs' names differ
    code, _, stderr = invoke(f"{tmp_path}/f2/a/*.png", tmp_path / "f2" / "a", "--weights", weights, "--format", "tif")
    assert code == 2 and "read as inputs" in stderr


def test_glob_matches_as_glob_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x" / "deep" / ".hidden").mkdir(parents=True)
    for rel in ("x/a.png", "x/deep/b.png", "x/deep/.hidden/c.png", "x/.d.png", "x/e.jpg"):
        (tmp_path / rel).write_bytes(b"")
    for pattern in ("x/*.png", "x/**/*.png", "x/**", "x/*/*.png", "x/[ad]*.png", "x/?.png", "x/.*.png", "x/**/.*"):
        full = f"{tmp_path}/{pattern}"
        import glob

        listed = {Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file()}
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert glob_matches(full, path) == (path in listed), (pattern, path)
    monkeypatch.chdir(tmp_path)  # relative patterns resolve against the working folder
    assert glob_matches("x/*.png", tmp_path / "x" / "new.png") and not glob_matches("x/*.png", tmp_path / "new.png")


# --------------------------------------------------------------------------- row 7: Ctrl-C


def test_ctrl_c_prints_the_summary_and_the_command_that_continues(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 4)
    real_run = TorchBackend.run
    calls = {"n": 0}

    def interrupted(self: TorchBackend, batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C while the second image is being restored
            raise KeyboardInterrupt
        return real_run(self, batch)

    monkeypatch.setattr(TorchBackend, "run", interrupted)
    code, stdout, stderr = invoke(src, out, "--weights", weights, "--tile", "0", "--overwrite")
    assert code == 130
    assert "restore summary" in stdout and "not written (interrupted): 3" in " ".join(stdout.split())
    assert "interrupted: 1 written" in stderr and "3 not written" in stderr
    command = next(line.strip() for line in stderr.splitlines() if line.strip().startswith("invrep restore"))
    args = shlex.split(command)[1:]
    assert "--overwrite" not in args and args[1:3] == [str(src), str(out)]
    monkeypatch.undo()
    result = runner.invoke(app, [*args, "--json"])
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and (summary["processed"], summary["skipped"]) == (3, 1)


_SIGINT_RUN = """
import os, signal, sys, time
# a child inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt handler: make
# Ctrl-C behave as in a terminal whatever the test process's disposition is
signal.signal(signal.SIGINT, signal.default_int_handler)
from invrep_cli.backends import TorchBackend
from invrep_cli.cli import main

real_run, calls = TorchBackend.run, [0]

def run(self, batch):
    calls[0] += 1
    if calls[0] == 2:  # a real SIGINT, as the terminal sends on Ctrl-C, during the second image
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    return real_run(self, batch)

TorchBackend.run = run
sys.argv = ["invrep", "restore", *sys.argv[1:]]
main()
"""


def test_a_real_sigint_ends_with_the_summary_and_exit_130(tmp_path: Path, weights: Path) -> None:
    import subprocess
    import sys

    src, out = tmp_path / "in", tmp_path / "out"
    write_images(src, 3)
    script = tmp_path / "sigint_run.py"
    script.write_text(_SIGINT_RUN, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), COLUMNS="80")
    args = [str(src), str(out), "--weights", str(weights), "--tile", "0", "--threads", "1"]
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert "restore summary" in proc.stdout and "Traceback" not in proc.stderr
    assert "1 written" in proc.stderr and "2 not written" in proc.stderr and "invrep restore" in proc.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["img_000.png"]


# --------------------------------------------------------------------------- row 8: output


def test_piped_and_no_color_output_is_plain_and_names_the_failures_file(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    write_images(src, 2)
    (src / "broken.png").write_text("not a PNG")
    for extra in ((), ("--no-color",)):
        out = tmp_path / f"out{len(extra)}"
        code, stdout, stderr = invoke(src, out, "--weights", weights, "--shard", "0/1", *extra)
        assert code == 1 and "restore summary" in stdout and "processed:" in stdout
        assert not set(stdout + stderr) & BOX_DRAWING and "\x1b[" not in stdout + stderr
        assert all(len(line) <= 80 for line in stdout.splitlines() if line.startswith("tiles:"))
        # errors on stderr only; the summary names the file that exists (a shard has its own)
        assert "broken.png" in stderr and "broken.png" not in stdout
        named = stderr.split("listed in ", 1)[1].split(")", 1)[0]
        assert Path(named).is_file() and "broken.png" in Path(named).read_text()


def test_a_failed_export_reports_on_stderr_in_plain_columns(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.onnx"
    args = ["export", "-w", str(weights), "--onnx", str(out), "--tolerance", "0", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and not out.exists()
    # the parity table belongs to the error: on stderr with it, plain when not a terminal
    assert result.stdout == "" and "differs from PyTorch" in result.stderr and "FAIL" in result.stderr
    assert not set(result.stderr) & BOX_DRAWING


def test_usage_errors_go_to_stderr(tmp_path: Path, weights: Path) -> None:
    write_images(tmp_path / "in", 1)
    for args in ((tmp_path / "nowhere", tmp_path / "out"), (tmp_path / "in", tmp_path / "out", "--tile", "x"),
                 (tmp_path / "in", tmp_path / "out", "--strength", "9")):
        code, stdout, stderr = invoke(*args, "--weights", weights)
        assert code == 2 and stdout == "" and stderr.strip()


# --------------------------------------------------------------------------- precision auto on CPU


def _image_16bit(path: Path) -> None:
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 65536, (24, 28), dtype=np.uint16)).save(path)  # 16-bit gray PNG


def test_auto_precision_on_a_bf16_cpu_is_bf16_for_8_bit_and_fp32_for_16_bit(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import invrep_cli.devices as devices

    monkeypatch.setattr(devices, "cpu_bf16_unsupported", lambda: None)  # the policy, on any CPU
    auto = make_backend(weights, device="cpu", threads=1)
    assert auto.precision_policy == "bf16 (8-bit), fp32 (16-bit)"
    auto.select_bit_depth(8)
    assert auto.precision == "bf16" and auto.model is not auto.model_fp32
    auto.select_bit_depth(16)
    assert auto.precision == "fp32" and auto.model is auto.model_fp32
    # through a run: the 16-bit image is restored at fp32 exactly, the 8-bit one at bf16
    src = tmp_path / "in"
    write_images(src, 1)
    _image_16bit(src / "deep.png")
    runs = {}
    for precision in ("auto", "fp32"):
        out = tmp_path / precision
        code, stdout, _ = invoke(src, out, "--weights", weights, "--precision", precision, "--json")
        runs[precision] = json.loads(stdout)
        assert code == 0 and runs[precision]["processed"] == 2
    assert runs["auto"]["precision"] == "bf16 (8-bit), fp32 (16-bit)" and runs["fp32"]["precision"] == "fp32"
    deep = [np.asarray(Image.open(tmp_path / p / "deep.png")) for p in ("auto", "fp32")]
    assert deep[0].dtype == np.uint16 and np.array_equal(deep[0], deep[1])
    eight = [np.asarray(Image.open(tmp_path / p / "img_000.png")).astype(int) for p in ("auto", "fp32")]
    assert not np.array_equal(eight[0], eight[1])  # bf16 really ran for the 8-bit one


def test_auto_precision_stays_fp32_on_a_cpu_without_bf16(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import invrep_cli.devices as devices

    monkeypatch.setattr(devices, "cpu_bf16_unsupported", lambda: "this processor has no bf16 instructions")
    backend = make_backend(weights, device="cpu", threads=1)
    backend.select_bit_depth(8)
    assert backend.precision == backend.precision_policy == "fp32" and backend.model is backend.model_fp32
