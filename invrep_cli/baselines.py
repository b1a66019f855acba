"""Classical baselines the bench compares with: OpenCV non-local means (tuned h per sigma) and
BM3D (the optional ``bm3d`` package). uint8 in, uint8 out."""

from __future__ import annotations

import numpy as np

from invrep_cli.synthetic import to_uint8

#: baseline names ``invrep bench --baselines`` takes ("noisy" scores the input itself)
BASELINES = ("noisy", "nlm", "bm3d")

# OpenCV NLM filter strength h per sigma (colour: h = hColor; gray: h), chosen by the PSNR sweep
# in benchmarks/tune_nlm.py on two scikit-image photos that are NOT bench images (rocket, motorcycle_left;
# gray = their luma), templateWindowSize 7, searchWindowSize 21. Found with:
#   python benchmarks/tune_nlm.py
# Other sigmas interpolate h/sigma linearly between these points (constant ratio beyond them).
# (207 s on 2 cores). The colour optimum is h ~ 0.7 sigma at 15-25 falling to 0.5 sigma at 75; the
# gray one is higher (~0.9 sigma at 25): OpenCV's colour NLM compares patches over three Lab channels.
NLM_H_COLOR: dict[float, float] = {5: 3.2, 10: 6.8, 15: 10.5, 25: 17.5, 35: 23.6, 50: 28.7, 75: 37.5}
NLM_H_GRAY: dict[float, float] = {5: 5.5, 10: 10.2, 15: 14.6, 25: 22.5, 35: 28.9, 50: 38.8, 75: 52.5}
NLM_TEMPLATE = 7
NLM_SEARCH = 21


def nlm_h(sigma: float, gray: bool) -> float:
    """The NLM filter strength for ``sigma`` from the tuned tables (see NLM_H_COLOR)."""
    table = NLM_H_GRAY if gray else NLM_H_COLOR
    sigmas = np.array(sorted(table), dtype=np.float64)
    ratios = np.array([table[s] / s for s in sorted(table)], dtype=np.float64)
    return float(sigma) * float(np.interp(float(sigma), sigmas, ratios))


def nlm_denoise(noisy: np.ndarray, h: float) -> np.ndarray:
    """OpenCV non-local means on a uint8 image (colour: h for luma and chroma alike)."""
    import cv2

    if noisy.ndim == 2:
        return cv2.fastNlMeansDenoising(noisy, None, h=float(h), templateWindowSize=NLM_TEMPLATE,
                                        searchWindowSize=NLM_SEARCH)
    # OpenCV's colour NLM works in Lab on BGR input; our arrays are RGB, so flip in and out
    bgr = np.ascontiguousarray(noisy[..., ::-1])
    out = cv2.fastNlMeansDenoisingColored(bgr, None, float(h), float(h), NLM_TEMPLATE, NLM_SEARCH)
    return np.ascontiguousarray(out[..., ::-1])


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (the ``bm3d`` package, extra ``invrep[bm3d]``) with the true sigma; uint8 in and out."""
    import bm3d

    z = noisy.astype(np.float64) / 255.0
    if noisy.ndim == 2:
        out = bm3d.bm3d(z, sigma_psd=float(sigma) / 255.0)
    else:
        out = bm3d.bm3d_rgb(z, sigma_psd=float(sigma) / 255.0)
    return to_uint8(np.asarray(out).reshape(noisy.shape))
