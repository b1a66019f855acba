"""The demo's inputs: Gaussian-noise photos, a clean photo given as it is, the real pair when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from invrep_cli.demo import CLEAN_SAMPLE, REAL_CROP, REAL_PAIR, SAMPLES, make_samples


def test_demo_inputs_with_and_without_the_real_pair(tmp_path: Path) -> None:
    names = [s.name for s in make_samples(tmp_path / "a", sigma=25, data_dir=tmp_path / "absent")]
    assert names == [f"{n}-sigma25" for n in SAMPLES] + [f"{CLEAN_SAMPLE}-clean"]
    clean = tmp_path / "a" / "clean" / f"{CLEAN_SAMPLE}-clean.png"
    noisy = tmp_path / "a" / "noisy" / f"{CLEAN_SAMPLE}-clean.png"
    assert np.array_equal(np.asarray(Image.open(clean)), np.asarray(Image.open(noisy)))

    data = tmp_path / "data"
    (data / "CC15").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in REAL_PAIR:
        Image.fromarray(rng.integers(0, 256, (300, 320, 3), dtype=np.uint8)).save(data / "CC15" / name)
    samples = make_samples(tmp_path / "b", sigma=25, data_dir=data)
    assert samples[-1].name == "cc15-real"
    real = np.asarray(Image.open(samples[-1].noisy))
    full = np.asarray(Image.open(data / "CC15" / REAL_PAIR[0]))
    assert real.shape == (REAL_CROP, REAL_CROP, 3)
    assert np.array_equal(real, full[22 : 22 + REAL_CROP, 32 : 32 + REAL_CROP])
