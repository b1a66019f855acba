"""Peak memory and wall time of `invrep restore` on a 6000 x 4000 photo on CPU.

    python benchmarks/peak_memory.py [--weights W] [--width 6000] [--height 4000] [--threads N] [-- extra restore args]

Writes a synthetic smooth RGB PNG (sums of low-frequency sinusoids plus a little grain, so the
PNG is small but the restorer sees a real-sized image) to a temporary folder, runs
`invrep restore` on it in a child process with the tile size left to restore, and prints JSON:
the child's peak resident memory (ru_maxrss from os.wait4, i.e. that process alone; VmHWM sampled
from /proc/<pid>/status while it runs, where available), its wall time, and whether the peak is
under the 2 GB target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TARGET_BYTES = 2 * 1024**3


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients and waves with mild noise: photo-like statistics, cheap to make."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        c = np.zeros((height, width), dtype=np.float32)
        for _ in range(4):
            fx, fy, phase = rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
            c += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase, dtype=np.float32)
        channels.append(c)
    img = np.stack(channels, -1)
    img = (img - img.min()) / (img.max() - img.min()) * 220.0 + 18.0
    img += rng.normal(0.0, 2.0, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _vmhwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights spec for invrep restore (default: bundled)")
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=None, help="--threads for invrep restore")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("restore_args", nargs="*", help="extra arguments for invrep restore (after --)")
    args = parser.parse_args()

    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="invrep-peakmem-"))
    try:
        src = tmp / "photo.png"
        t0 = time.perf_counter()
        Image.fromarray(synthetic_photo(args.height, args.width)).save(src, compress_level=1)
        made = time.perf_counter() - t0
        out = tmp / "out"
        cmd = [sys.executable, "-m", "invrep_cli", "restore", str(src), str(out), "--device", "cpu"]
        if args.weights:
            cmd += ["--weights", args.weights]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        cmd += args.restore_args
        env = dict(os.environ)
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        hwm = [0]
        stop = threading.Event()

        def sample() -> None:
            # VmHWM is the kernel's own high-water mark; sampling it just reads it before the exit
            while not stop.is_set():
                value = _vmhwm_kb(child.pid)
                if value:
                    hwm[0] = max(hwm[0], value)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output = child.stdout.read() if child.stdout else ""
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        # ru_maxrss is in kilobytes on Linux, bytes on macOS
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        outputs = sorted(p.name for p in out.rglob("*") if p.is_file()) if out.exists() else []
        print(json.dumps({
            "command": " ".join(cmd),
            "image": f"{args.width}x{args.height}",
            "megapixels": args.width * args.height / 1e6,
            "exit_code": child.returncode,
            "wall_s": round(wall, 2),
            "mp_per_s_incl_io": round(args.width * args.height / 1e6 / wall, 4),
            "peak_rss_mb": round(peak / 2**20, 1),
            "vmhwm_sampled_mb": round(hwm[0] / 1024, 1) if hwm[0] else None,
            "under_2gb_target": peak < TARGET_BYTES,
            "outputs": outputs,
            "synthetic_png_s": round(made, 2),
            "restore_output_tail": output[-2000:],
        }, indent=2))
        if child.returncode != 0:
            sys.exit(child.returncode)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
