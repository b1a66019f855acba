"""Tile planning and blending as pure functions over numpy arrays (no model, no I/O).

Why tiled output can equal whole-image output exactly:
- the restorer pads its input (reflect, bottom/right) to a multiple of ``size_multiple`` and its
  stride-2 convolutions see the image on a grid anchored at (0, 0). So the image is padded here
  exactly as the restorer pads it, and every tile's input window starts and ends on multiples of
  ``size_multiple``: each tile then sees the same sub-sampling grid as the whole image;
- a tile's input is its core region plus ``margin`` pixels of context on each side, clipped at the
  padded border (where the network's own reflect padding then matches the whole-image run). With a
  margin of at least half the receptive field, the core's output depends only on pixels the tile
  holds, so it equals the whole-image output up to float rounding;
- neighbouring cores overlap by ``overlap`` pixels and are blended with a raised-cosine ramp,
  normalised by the sum of the windows, which hides seams when the margin is smaller than that.

Memory: the only image-sized allocation is the output, in the dtype it will be written in (uint8
or uint16 for files); tiles are cut from the input as they run and blended in a float32 band one
tile row high (``tiled_apply``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

#: N x C x h x w float32 in [0, 1] -> the same shape; what a backend's ``run`` is
BatchFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Tile:
    """One tile, in coordinates of the padded image (half-open ranges).

    ``out_*`` is the region whose output this tile contributes (its core plus half the overlap on
    each interior side); ``in_*`` is what the network sees: ``out_*`` plus the context margin,
    widened to multiples of the size multiple and clipped at the padded border.
    """

    out_y0: int
    out_y1: int
    out_x0: int
    out_x1: int
    in_y0: int
    in_y1: int
    in_x0: int
    in_x1: int
    #: ramp widths (px) on each side of the out region: 0 at the image border
    ramp_top: int
    ramp_bottom: int
    ramp_left: int
    ramp_right: int

    @property
    def in_shape(self) -> tuple[int, int]:
        return self.in_y1 - self.in_y0, self.in_x1 - self.in_x0


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    #: size after padding to ``multiple`` (what the tiles cover)
    padded_height: int
    padded_width: int
    #: core size in px; 0 means one tile over the whole image
    tile: int
    overlap: int
    margin: int
    multiple: int
    tiles: tuple[Tile, ...]

    @property
    def max_input_side(self) -> int:
        return max(max(t.in_shape) for t in self.tiles)

    def describe(self) -> str:
        if len(self.tiles) == 1:
            return f"1 tile ({self.padded_height}x{self.padded_width})"
        return (
            f"{len(self.tiles)} tiles of {self.tile} px (+{self.overlap} overlap, +{self.margin} context) "
            f"over {self.height}x{self.width}"
        )


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def round_down(value: int, multiple: int) -> int:
    return (value // multiple) * multiple


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad an H x W x C image at the bottom/right exactly as ``Restorer.forward`` pads its input:
    reflect, or replicate when the image is too small to reflect."""
    h, w = image.shape[:2]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    mode = "reflect" if (pad_h < h and pad_w < w) else "edge"
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode=mode)


def _axis_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split [0, length) into cores of ``tile`` px; returns (out0, out1, ramp_lo, ramp_hi) per tile,
    the out range being the core widened by half the overlap on interior sides."""
    if tile <= 0 or tile >= length:
        return [(0, length, 0, 0)]
    count = math.ceil(length / tile)
    # spread the cores evenly so the last one is not a sliver
    edges = [round(i * length / count) for i in range(count + 1)]
    lo_half, hi_half = overlap // 2, overlap - overlap // 2
    spans = []
    for i in range(count):
        a, b = edges[i], edges[i + 1]
        ramp_lo = 0 if i == 0 else overlap
        ramp_hi = 0 if i == count - 1 else overlap
        out0 = a if i == 0 else max(0, a - lo_half)
        out1 = b if i == count - 1 else min(length, b + hi_half)
        spans.append((out0, out1, ramp_lo, ramp_hi))
    return spans


def plan_tiles(height: int, width: int, tile: int, overlap: int = 0, margin: int = 0, multiple: int = 1) -> TilePlan:
    """Plan tiles over an image of ``height`` x ``width``.

    ``tile`` is the core size (0 or larger than the image: one tile), ``overlap`` the width of the
    blended band between neighbours, ``margin`` the context each tile sees beyond its out region,
    ``multiple`` the alignment the network needs. Every pixel of the padded image is covered.
    """
    if height < 1 or width < 1:
        raise ValueError(f"empty image {height}x{width}")
    if tile < 0 or overlap < 0 or margin < 0 or multiple < 1:
        raise ValueError("tile, overlap and margin must be >= 0 and multiple >= 1")
    padded_h, padded_w = round_up(height, multiple), round_up(width, multiple)
    if tile > 0:
        # a core narrower than the overlap would leave no pixel of its own
        tile = max(tile, overlap + 1)
    tiles = []
    for out_y0, out_y1, ramp_t, ramp_b in _axis_spans(padded_h, tile, overlap):
        in_y0 = round_down(max(0, out_y0 - margin), multiple)
        in_y1 = min(padded_h, round_up(out_y1 + margin, multiple))
        for out_x0, out_x1, ramp_l, ramp_r in _axis_spans(padded_w, tile, overlap):
            in_x0 = round_down(max(0, out_x0 - margin), multiple)
            in_x1 = min(padded_w, round_up(out_x1 + margin, multiple))
            tiles.append(
                Tile(out_y0, out_y1, out_x0, out_x1, in_y0, in_y1, in_x0, in_x1, ramp_t, ramp_b, ramp_l, ramp_r)
            )
    return TilePlan(height, width, padded_h, padded_w, tile, overlap, margin, multiple, tuple(tiles))


def _ramp(length: int, ramp_lo: int, ramp_hi: int) -> np.ndarray:
    """1-D window: a half-sine squared (raised cosine) rising over ``ramp_lo`` px, flat 1, falling
    over ``ramp_hi`` px. Strictly positive, so every covered pixel has weight."""
    w = np.ones(length, dtype=np.float32)
    for n, sl in ((min(ramp_lo, length), slice(None)), (min(ramp_hi, length), slice(None, None, -1))):
        if n:
            rise = np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n) ** 2
            w[sl][:n] = np.minimum(w[sl][:n], rise)
    return w


def blend_window(tile: Tile) -> np.ndarray:
    """The h x w weight of a tile's out region (outer product of its two 1-D ramps)."""
    wy = _ramp(tile.out_y1 - tile.out_y0, tile.ramp_top, tile.ramp_bottom)
    wx = _ramp(tile.out_x1 - tile.out_x0, tile.ramp_left, tile.ramp_right)
    return wy[:, None] * wx[None, :]


def _rows(plan: TilePlan) -> list[list[Tile]]:
    """The plan's tiles as rows (same out rows), top to bottom."""
    rows: dict[tuple[int, int], list[Tile]] = {}
    for t in plan.tiles:
        rows.setdefault((t.out_y0, t.out_y1), []).append(t)
    return [rows[key] for key in sorted(rows)]


def _batches(tiles: list[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Tiles grouped by input shape (so they stack), at most ``batch_size`` per group."""
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        by_shape.setdefault(t.in_shape, []).append(t)
    for group in by_shape.values():
        for i in range(0, len(group), max(1, batch_size)):
            yield group[i : i + batch_size]


def _padded_index(start: int, stop: int, length: int, reflect: bool) -> np.ndarray:
    """Indices into an axis of ``length`` for positions [start, stop) of the padded axis, padded
    as ``pad_to_multiple`` pads (reflect without repeating the edge, or replicate)."""
    idx = np.arange(start, stop)
    beyond = idx >= length
    idx[beyond] = 2 * (length - 1) - idx[beyond] if reflect else length - 1
    return idx


def _peak(dtype: np.dtype) -> float:
    """The value that stands for 1.0 in ``dtype``: 255, 65535, or 1 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def tiled_apply(
    image: np.ndarray, fn: BatchFn, plan: TilePlan, batch_size: int = 1, out_dtype: type | None = None
) -> np.ndarray:
    """Run ``fn`` over ``image`` (H x W x C) tile by tile and blend: H x W x C.

    ``image`` is float32 in [0, 1], or uint8 / uint16 samples (read as value / 255 or / 65535).
    ``fn`` receives N x C x h x w float32 batches in [0, 1] whose h and w are multiples of
    ``plan.multiple``. The result is float32, or ``out_dtype`` (uint8 / uint16: rounded and clipped).

    Memory: tiles are cut from ``image`` one batch at a time (no padded or float copy of it), and
    blended in a float32 band one tile row high; finished rows go straight into the output, so the
    only image-sized allocation is the output itself, in ``out_dtype``.
    """
    h, w = image.shape[:2]
    if (h, w) != (plan.height, plan.width):
        raise ValueError(f"plan is for {plan.height}x{plan.width}, image is {h}x{w}")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    in_scale = 1.0 / _peak(image.dtype)
    out_dtype = np.dtype(out_dtype or np.float32)
    out_peak = _peak(out_dtype)
    out = np.empty((h, w, channels), dtype=out_dtype)
    pad_h, pad_w = plan.padded_height - h, plan.padded_width - w
    reflect = pad_h < h and pad_w < w  # as pad_to_multiple decides
    width = plan.padded_width

    def emit(acc: np.ndarray, weight: np.ndarray, band0: int, stop: int) -> None:
        """Rows [band0, stop) of the band are final: normalise and store them."""
        rows = min(stop, h) - band0
        if rows <= 0:
            return
        block = acc[:, :rows, :w] / weight[:rows, :w]
        if out_peak != 1.0:  # in place: no second band-sized temporary
            np.clip(block, 0.0, 1.0, out=block)
            block *= out_peak
            np.rint(block, out=block)
        out[band0 : band0 + rows] = block.transpose(1, 2, 0)

    band0, band1 = 0, 0
    acc = np.zeros((channels, 0, width), dtype=np.float32)
    weight = np.zeros((0, width), dtype=np.float32)
    for row in _rows(plan):
        y0, y1 = row[0].out_y0, row[0].out_y1
        # rows above this tile row are final; the overlap carries into the new band
        emit(acc, weight, band0, y0)
        new_acc = np.zeros((channels, y1 - y0, width), dtype=np.float32)
        new_weight = np.zeros((y1 - y0, width), dtype=np.float32)
        keep = max(0, band1 - y0)
        new_acc[:, :keep] = acc[:, y0 - band0 : band1 - band0]
        new_weight[:keep] = weight[y0 - band0 : band1 - band0]
        acc, weight, band0, band1 = new_acc, new_weight, y0, y1
        for group in _batches(row, batch_size):
            tiles = []
            for t in group:
                ys = _padded_index(t.in_y0, t.in_y1, h, reflect)
                xs = _padded_index(t.in_x0, t.in_x1, w, reflect)
                tiles.append(image[ys[:, None], xs[None, :]].transpose(2, 0, 1))
            batch = np.stack(tiles).astype(np.float32)
            if in_scale != 1.0:
                batch *= in_scale
            result = np.asarray(fn(batch), dtype=np.float32)
            if result.shape != batch.shape:
                raise ValueError(f"tile function returned {result.shape} for input {batch.shape}")
            for t, res in zip(group, result, strict=True):
                win = blend_window(t)
                oy, ox = t.out_y0 - t.in_y0, t.out_x0 - t.in_x0
                core = res[:, oy : oy + t.out_y1 - t.out_y0, ox : ox + t.out_x1 - t.out_x0]
                acc[:, t.out_y0 - band0 : t.out_y1 - band0, t.out_x0 : t.out_x1] += core * win
                weight[t.out_y0 - band0 : t.out_y1 - band0, t.out_x0 : t.out_x1] += win
            del batch, result
    emit(acc, weight, band0, band1)
    return out
