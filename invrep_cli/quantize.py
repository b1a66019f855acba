"""Static int8 quantization of an exported fp32 restorer graph (ONNX Runtime's quantization tools).

Decisions, each measured on the bundled lir-lite restorer on the 2-core dev machine:
- QDQ format (QuantizeLinear/DequantizeLinear around each quantized tensor): ONNX Runtime's CPU
  provider fuses the pairs into int8 convolutions (VNNI where present), and the file stays a
  standard ONNX graph that other runtimes can read.
- Only Conv nodes are quantized. Convolutions are nearly all of the work; quantizing the per-pixel
  channel norms, tanh and the [0, 1] mapping as well adds Q/DQ pairs around every element-wise op
  and cost 3 dB of parity (39.7 against 42.6 dB PSNR vs the fp32 graph) for no speed.
- Two Convs stay fp32 (``fp32_convs``): the last one fed by a Concat (a U-Net's full-resolution skip
  fusion: the concatenated encoder and decoder features have different ranges, which one per-tensor
  uint8 scale serves badly) and the output conv (its error goes straight into the pixels). On the
  lir-unet default all-int8 was 43.8 dB against the fp32 graph and cost 0.22 dB on CBSD68 sigma 25;
  the full-resolution fusion alone in fp32 gave 47.8 dB, with the output conv 50.4 dB (8 % of the
  multiply-adds in fp32); keeping the half-resolution fusion too added nothing (50.6 dB).
- Weights int8 symmetric per output channel, activations uint8 asymmetric (U8S8, ORT's choice for
  x86); per-channel weights cost nothing at run time and keep narrow channels from being rounded
  to zero by a wide neighbour.
- Calibration: MinMax ranges over seeded random crops of a folder of images (clean or noisy; with
  ``sigma`` > 0 Gaussian noise is added first, so clean photos calibrate a denoiser's real input).
  Percentile calibration gave the same parity (42.8 dB) and prints to stdout.
- Parity: PSNR of the int8 graph against the fp32 graph on held-out crops of the same folder (other
  seed, odd sizes so the pad-to-a-multiple path runs), data range 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli.errors import DataError, ImageError

#: held-out parity crops: this many, of (crop - 3) x (crop + 5) px (odd: the graph's padding runs)
PARITY_CROPS = 8


@dataclass(frozen=True)
class Calibration:
    """Where the int8 ranges come from; stored in the graph's metadata."""

    #: folder of images (searched recursively)
    folder: str
    #: random crops fed through the fp32 graph
    crops: int = 64
    #: crop side in px (smaller images give whole-image crops)
    crop_size: int = 128
    #: Gaussian noise (0-255 scale) added to each crop; 0 for folders of noisy images
    sigma: float = 0.0
    seed: int = 0


def _image_files(folder: Path) -> list[Path]:
    from invrep_cli.imageio import IMAGE_SUFFIXES, image_files

    if not folder.is_dir():
        raise DataError(f"--calibrate {folder}: not a folder")
    files = image_files(folder)
    if not files:
        raise DataError(f"--calibrate {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def random_crops(
    files: Sequence[Path], count: int, size: tuple[int, int], sigma: float, seed: int
) -> list[np.ndarray]:
    """``count`` crops of ``size`` (H, W), 1 x 3 x H x W float32 in [0, 1], round-robin over ``files``.

    Positions and noise come from ``seed``; gray images are replicated to RGB (what restore does).
    Images smaller than the crop are taken whole. Unreadable files are skipped.
    """
    from invrep_cli.imageio import read_image

    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    readable = list(files)
    index = 0
    while len(crops) < count and readable:
        path = readable[index % len(readable)]
        try:
            pixels = read_image(path).pixels
        except ImageError:
            readable.remove(path)
            continue
        index += 1
        h, w = pixels.shape[:2]
        ch, cw = min(size[0], h), min(size[1], w)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = pixels[y : y + ch, x : x + cw]
        if crop.shape[2] == 1:
            crop = np.repeat(crop, 3, axis=2)
        crop = crop[..., :3]
        if sigma > 0:
            crop = np.clip(crop + rng.normal(0.0, sigma / 255.0, crop.shape), 0.0, 1.0)
        crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32))
    if not crops:
        raise DataError(f"no readable images among {len(files)} calibration file(s)")
    return crops


def files_digest(files: Sequence[Path], root: Path) -> str:
    """sha256 over the sorted relative names and sizes: says which folder state calibrated a graph."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of inputs."""

    def __init__(self, input_name: str, inputs: Sequence[np.ndarray]) -> None:
        self._items: Iterator[np.ndarray] = iter(inputs)
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        return None if item is None else {self.input_name: item}

    def rewind(self) -> None:  # part of the protocol; one pass is all MinMax needs
        pass


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer prints progress and warns about pre-processing; keep stdout clean for --json."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def fp32_convs(model: Any) -> list[str]:
    """Conv nodes kept in fp32: the last one fed by a Concat (through Pad/Cast/Identity), and the last one."""
    producers = {output: node for node in model.graph.node for output in node.output}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]

    def fed_by_concat(node: Any) -> bool:
        source = producers.get(node.input[0])
        while source is not None and source.op_type in ("Pad", "Cast", "Identity"):
            source = producers.get(source.input[0])
        return source is not None and source.op_type == "Concat"

    # graph nodes are in topological order: the last fusion is the one nearest full resolution
    keep = [node.name for node in convs if fed_by_concat(node)][-1:]
    if convs and convs[-1].name not in keep:
        keep.append(convs[-1].name)
    return keep


def quantize_graph(
    fp32_path: Path, out_path: Path, calibration: Calibration, input_name: str, per_channel: bool = True
) -> dict[str, Any]:
    """Write the int8 QDQ graph of ``fp32_path`` to ``out_path``; returns the settings for metadata."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    root = Path(calibration.folder)
    files = _image_files(root)
    size = (calibration.crop_size, calibration.crop_size)
    crops = random_crops(files, calibration.crops, size, calibration.sigma, calibration.seed)
    prepared = fp32_path.with_name(fp32_path.stem + ".pre.onnx")
    try:
        with _quiet():
            # constant folding and shape inference first, as ORT recommends (symbolic shapes are
            # skipped: the graph's height and width are dynamic)
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            keep_fp32 = fp32_convs(onnx.load(str(prepared)))
            quantize_static(
                str(prepared), str(out_path), _Reader(input_name, crops), nodes_to_exclude=keep_fp32,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        prepared.unlink(missing_ok=True)
    return {
        "format": "QDQ",
        "ops": ["Conv"],
        "fp32_convs": keep_fp32,
        "weights": "int8 symmetric " + ("per channel" if per_channel else "per tensor"),
        "activations": "uint8 asymmetric",
        "method": "MinMax",
        "calibration": asdict(calibration) | {
            "folder": root.name,
            "files": len(files),
            "files_sha256": files_digest(files, root),
            "crops_used": len(crops),
        },
    }


def psnr_against(reference: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> dict[str, float]:
    """PSNR (data range 1) of ``test`` against ``reference``: over all pixels, and the worst input."""
    errors = [float(np.mean((np.asarray(t, np.float64) - np.asarray(r, np.float64)) ** 2))
              for r, t in zip(reference, test, strict=True)]

    def psnr(mse: float) -> float:
        return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)

    diffs = [float(np.abs(np.asarray(t) - np.asarray(r)).max()) for r, t in zip(reference, test, strict=True)]
    return {"psnr_db": psnr(float(np.mean(errors))), "min_psnr_db": psnr(max(errors)), "max_abs_diff": max(diffs)}


def int8_parity(
    int8_path: Path, fp32_path: Path, calibration: Calibration, threads: int | None = None
) -> dict[str, Any]:
    """PSNR of the int8 graph against the fp32 graph on held-out crops (see the module docstring)."""
    from invrep_cli.onnx_backend import make_session

    files = _image_files(Path(calibration.folder))
    size = (calibration.crop_size - 3, calibration.crop_size + 5)
    inputs = random_crops(files, PARITY_CROPS, size, calibration.sigma, calibration.seed + 1)
    outputs = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        session, provider = make_session(path, "cpu", threads)
        input_name = session.get_inputs()[0].name
        outputs[name] = [session.run(None, {input_name: x})[0] for x in inputs]
    report = psnr_against(outputs["fp32"], outputs["int8"])
    finite = all(np.isfinite(y).all() for y in outputs["int8"])
    return report | {
        "provider": provider,
        "inputs": len(inputs),
        "size": [1, 3, *size],
        "finite": finite,
        "threads": threads if threads is not None else os.cpu_count(),
    }
