"""Image reading and writing that keeps what photographers care about.

- bit depth: 8-bit in -> 8-bit out, 16-bit in -> 16-bit out (Pillow cannot hold 16-bit RGB, so
  16-bit colour PNG/TIFF is decoded with OpenCV and written with OpenCV or tifffile);
- alpha: passed through untouched, only colour is restored;
- gray stays gray (the restorer has a 1-channel path);
- EXIF orientation is applied to the pixels and reset to 1 in the EXIF carried to the output, so
  photos are neither left rotated nor rotated twice; EXIF and ICC bytes are carried over;
- decompression bombs are refused: one limit, ``MAX_PIXELS`` (or the caller's ``max_pixels``,
  ``--max-megapixels``), checked right after the header is parsed and before any pixel is decoded,
  and quoted the same way everywhere (``pixel_limit_text``). Importing this module switches off
  Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS = None``), which would otherwise fire first
  with other numbers (its warning at 1x, its error at 2x its value) and could not be raised per run;
- every decoding failure becomes one ``ImageError`` naming the file and the reason, so a batch can
  report it and go on;
- samples stay in their own dtype (uint8 or uint16) until a tile needs them as float32;
- writes go through ``fsutil.atomic_path``: a crash never leaves a half-written output.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from invrep_cli.errors import ImageError
from invrep_cli.fsutil import atomic_path

#: largest image accepted by default, in pixels (200 MP); larger files are treated as
#: decompression bombs unless the caller raises the limit
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = None  # our check below is the one limit (see the module docstring)

#: extensions a folder scan picks up
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
#: --format choices and the suffix each writes
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "webp": ".webp"}
FORMAT_CHOICES = ("keep", *FORMAT_SUFFIX)
_EXIF_ORIENTATION = 0x0112
_EXIF_SOFTWARE = 0x0131  # what made the pixels: restore writes its own provenance here
#: what Pillow's getexif() returns for a TIFF besides real EXIF: the file's own layout tags (size,
#: bits, compression, strips, resolution, colour map, ICC, ...) and the description and software
#: tags writers fill in. None of it is photo metadata, none of it may be carried to another file.
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 269, 270, 273, 277, 278, 279, 280, 281, 282, 283, 284,
    285, 296, 297, 305, 317, 318, 319, 320, 322, 323, 324, 325, 338, 339, 340, 341, 530, 531, 532, 34675,
})
_JPEG_QUALITY = 95
_WEBP_QUALITY = 95


@dataclass
class LoadedImage:
    """A decoded image: colour to restore, and everything to carry to the output untouched."""

    #: H x W x C samples as stored (uint8 or uint16), C = 1 (gray) or 3 (RGB), orientation applied
    samples: np.ndarray
    #: H x W alpha in its original integer dtype (uint8 or uint16), or None
    alpha: np.ndarray | None
    #: 8 or 16
    bit_depth: int
    #: what was read, e.g. "RGB", "RGBA", "L", "LA", "RGB;16", "L;16"
    mode: str
    #: Pillow's format name: "PNG", "JPEG", "TIFF", "WEBP", "BMP", ...
    format: str
    icc: bytes | None = None
    #: EXIF block with orientation reset to 1 (None when the file had no EXIF)
    exif: bytes | None = None
    #: conversions made while reading, worth telling the user about
    notes: list[str] = field(default_factory=list)

    @property
    def pixels(self) -> np.ndarray:
        """The colour as H x W x C float32 in [0, 1] (a new array: 4 bytes a sample)."""
        peak = 65535.0 if self.samples.dtype == np.uint16 else 255.0
        out = self.samples.astype(np.float32)
        out *= 1.0 / peak
        return out

    @property
    def height(self) -> int:
        return int(self.samples.shape[0])

    @property
    def width(self) -> int:
        return int(self.samples.shape[1])

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Files under ``folder`` (recursive) with an image extension, sorted; what bench and int8
    calibration read. (``invrep restore`` scans with ``inputs.collect_inputs``, which also reports
    every entry it passes over.)"""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> LoadedImage:
    """Read and decode one image file; any failure is an ``ImageError`` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, path, max_pixels)


def pixel_limit_text(max_pixels: int | None = None) -> str:
    """The pixel limit as every message quotes it, e.g. "200 MP"."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    return f"{limit / 1e6:g} MP"


def decode_image(data: bytes, path: str | os.PathLike[str], max_pixels: int | None = None) -> LoadedImage:
    """Decode file bytes (already read, e.g. to hash them once); ``path`` only names the file.
    ``max_pixels``: the decompression-bomb limit (None: ``MAX_PIXELS``)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
        width, height = im.size
        if width * height > limit:
            raise ImageError(
                path, f"{width}x{height} ({width * height / 1e6:.1f} MP) is over the {pixel_limit_text(limit)} "
                "decompression-bomb limit (--max-megapixels raises it)"
            )
        notes: list[str] = []
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"{im.n_frames} frames: only the first is restored")
        icc = im.info.get("icc_profile") or None
        exif = im.getexif()
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
        fmt = im.format or "unknown"
        if _is_16bit_colour(data, im):
            samples, alpha, mode = _decode_16bit_colour(data, path)
            samples, alpha = _orient(samples, orientation), (None if alpha is None else _orient(alpha, orientation))
            bit_depth = 16
        else:
            im.load()  # decodes now, so truncated data fails here with the file's name
            im = ImageOps.exif_transpose(im) if orientation != 1 else im
            samples, alpha, mode, bit_depth, drop_icc = _from_pillow(im, path, notes)
            if drop_icc and icc:
                notes.append("ICC profile dropped (it describes the original colour space)")
                icc = None
        # after the pixels are turned: resetting the tag mutates the Exif object Pillow caches
        if fmt == "TIFF":
            for tag in _TIFF_LAYOUT_TAGS & set(exif):
                del exif[tag]
        exif_bytes = _exif_without_orientation(exif)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # if a caller set Pillow's
        raise ImageError(path, f"decompression bomb refused ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(path, "not a readable image (unknown format or not an image file)") from exc
    except Exception as exc:  # truncated or corrupt data: decoders raise OSError, SyntaxError, struct.error...
        raise ImageError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return LoadedImage(samples, alpha, bit_depth, mode, fmt, icc, exif_bytes, notes)


def _exif_without_orientation(exif: Image.Exif) -> bytes | None:
    if not len(exif):
        return None
    if _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    return exif.tobytes()


def _is_16bit_colour(data: bytes, im: Image.Image) -> bool:
    """16-bit colour (or gray + alpha), which Pillow would silently reduce to 8 bits."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        bit_depth, colour_type = data[24], data[25]
        return bit_depth == 16 and colour_type in (2, 4, 6)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(int(b or 8) for b in bits) == 16 and len(bits) >= 2
    return False


def _decode_16bit_colour(data: bytes, path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, str]:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(path, "cannot decode 16-bit image")
    if arr.dtype != np.uint16:
        raise ImageError(path, f"unsupported sample type {arr.dtype} in a 16-bit image")
    if arr.ndim == 2:
        return arr[..., None], None, "L;16"
    channels = arr.shape[2]
    if channels == 2:
        return np.ascontiguousarray(arr[..., :1]), arr[..., 1].copy(), "LA;16"
    if channels == 3:
        return np.ascontiguousarray(arr[..., ::-1]), None, "RGB;16"  # OpenCV is BGR
    if channels == 4:
        return np.ascontiguousarray(arr[..., 2::-1]), arr[..., 3].copy(), "RGBA;16"
    raise ImageError(path, f"unsupported 16-bit image with {channels} channels")


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation applied to an H x W (x C) array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(arr)) if op else arr


def _from_pillow(
    im: Image.Image, path: str | os.PathLike[str], notes: list[str]
) -> tuple[np.ndarray, np.ndarray | None, str, int, bool]:
    """(samples, alpha, mode, bit depth, whether the ICC profile no longer applies)."""
    mode = im.mode
    drop_icc = False
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
        return arr[..., None], None, "L;16", 16, False
    if mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(path, "unsupported 32-bit integer pixels outside the 16-bit range")
        notes.append("32-bit integer image read as 16-bit")
        return arr[..., None].astype(np.uint16), None, "L;16", 16, False
    if mode == "1":
        notes.append("1-bit image converted to 8-bit gray")
        im, mode = im.convert("L"), "L"
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        target = "RGBA" if has_alpha else "RGB"
        notes.append(f"palette image converted to {target}")
        im, mode = im.convert(target), target
    elif mode == "La":
        im, mode = im.convert("LA"), "LA"
    elif mode == "RGBa":
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode in ("RGBX", "YCbCr"):
        im, mode = im.convert("RGB"), "RGB"
    elif mode in ("CMYK", "LAB", "HSV"):
        notes.append(f"{mode} image converted to RGB")
        im, mode, drop_icc = im.convert("RGB"), "RGB", True
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(path, f"unsupported pixel mode {mode!r}")
    arr = np.asarray(im)
    colour_channels = 1 if mode.startswith("L") else 3
    samples = np.ascontiguousarray(arr.reshape(arr.shape[0], arr.shape[1], -1)[..., :colour_channels])
    alpha = arr[..., -1].copy() if mode.endswith("A") else None
    return samples, alpha, mode, 8, drop_icc


def output_suffix(input_suffix: str, fmt: str = "keep") -> str:
    """The output file's suffix for ``--format``; ``keep`` keeps a writable input suffix, else PNG."""
    if fmt == "keep":
        suffix = input_suffix.lower()
        return input_suffix if suffix in IMAGE_SUFFIXES else ".png"
    if fmt not in FORMAT_SUFFIX:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMAT_CHOICES}")
    return FORMAT_SUFFIX[fmt]


def _quantise(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    peak = 65535.0 if bit_depth == 16 else 255.0
    out = np.rint(np.clip(pixels, 0.0, 1.0) * peak)
    return out.astype(np.uint16 if bit_depth == 16 else np.uint8)


def _to_depth(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8 / uint16 samples (colour or alpha) at ``bit_depth``, rounded."""
    if samples.dtype == np.uint16 and bit_depth == 8:
        return ((samples.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if samples.dtype == np.uint8 and bit_depth == 16:
        return samples.astype(np.uint16) * 257
    return samples


def write_image(
    path: str | os.PathLike[str], pixels: np.ndarray, source: LoadedImage, software: str | None = None
) -> list[str]:
    """Write restored ``pixels`` (H x W x C float32 in [0, 1], or uint8 / uint16 samples) with
    ``source``'s alpha, bit depth, ICC and EXIF, in the format of ``path``'s suffix, atomically.
    ``software`` (what made the pixels: program, weights, strength) goes into the EXIF Software tag
    of every format that holds EXIF (PNG, JPEG, TIFF, WebP; BMP holds none), replacing the camera's
    or an earlier editor's, as photo editors do. Returns notes on what the format could not hold.
    Raises ``ImageError`` on failure (no partial file is left)."""
    path = Path(path)
    own_exif = source.exif is not None  # the input's, which a format that cannot hold it loses
    if software:
        source = dataclasses.replace(source, exif=exif_with_software(source.exif, software))
    suffix = path.suffix.lower()
    notes: list[str] = []
    bit_depth, alpha = source.bit_depth, source.alpha
    if suffix in (".jpg", ".jpeg", ".webp", ".bmp") and bit_depth == 16:
        notes.append(f"{suffix[1:].upper()} holds 8 bits: written as 8-bit")
        bit_depth = 8
    if suffix in (".jpg", ".jpeg") and alpha is not None:
        notes.append("JPEG has no alpha: alpha dropped")
        alpha = None
    colour = _to_depth(pixels, bit_depth) if np.issubdtype(pixels.dtype, np.integer) else _quantise(pixels, bit_depth)
    if colour.shape[2] == 1:
        colour = colour[..., 0]
    if alpha is not None:
        alpha = _to_depth(alpha, bit_depth)
    try:
        with atomic_path(path) as tmp:
            if bit_depth == 16 and (colour.ndim == 3 or alpha is not None):
                notes += _write_16bit_multichannel(tmp, suffix, colour, alpha, source, software, own_exif)
            else:
                _write_pillow(tmp, suffix, colour, alpha, bit_depth, source, notes, own_exif)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(path, f"cannot write image ({type(exc).__name__}: {exc})") from exc
    return notes


_PILLOW_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                  ".bmp": "BMP"}


def _write_pillow(
    tmp: Path, suffix: str, colour: np.ndarray, alpha: np.ndarray | None, bit_depth: int, source: LoadedImage,
    notes: list[str], own_exif: bool,
) -> None:
    if suffix not in _PILLOW_FORMAT:
        raise ValueError(f"cannot write {suffix} files")
    fmt = _PILLOW_FORMAT[suffix]
    if bit_depth == 16:  # only gray without alpha reaches here
        im = Image.fromarray(np.ascontiguousarray(colour, dtype=np.uint16))  # I;16
    elif alpha is not None:
        # fromarray picks LA / RGBA from the channel count
        im = Image.fromarray(np.dstack([colour if colour.ndim == 3 else colour[..., None], alpha]))
    else:
        im = Image.fromarray(colour)
    options: dict[str, object] = {}
    if fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
        if source.icc:
            options["icc_profile"] = source.icc
        if source.exif:
            options["exif"] = source.exif
    elif source.icc or own_exif:
        notes.append(f"{fmt} cannot hold ICC/EXIF: dropped")
    if fmt == "JPEG":
        options.update(quality=_JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=_WEBP_QUALITY)
        if im.mode == "LA":  # WEBP has no gray: store as RGBA
            im = im.convert("RGBA")
        elif im.mode == "L":
            im = im.convert("RGB")
    elif fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    im.save(tmp, format=fmt, **options)


def _write_16bit_multichannel(
    tmp: Path, suffix: str, colour: np.ndarray, alpha: np.ndarray | None, source: LoadedImage,
    software: str | None, own_exif: bool,
) -> list[str]:
    """16-bit colour or gray + alpha: OpenCV for PNG (ICC/EXIF chunks added by hand), tifffile for
    TIFF (keeps the ICC profile)."""
    notes: list[str] = []
    if colour.ndim == 2 and alpha is not None:
        notes.append("16-bit gray + alpha written as 16-bit RGBA")
        colour = np.repeat(colour[..., None], 3, axis=2)
    if suffix == ".png":
        import cv2

        bgr = colour[..., ::-1]
        arr = np.dstack([bgr, alpha]) if alpha is not None else bgr
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
        if not ok:
            raise ValueError("OpenCV could not encode the PNG")
        tmp.write_bytes(_png_with_metadata(buf.tobytes(), source.icc, source.exif))
        return notes
    if suffix in (".tif", ".tiff"):
        import tifffile

        arr = np.dstack([colour, alpha]) if alpha is not None else colour
        extratags = [(34675, "B", len(source.icc), source.icc, True)] if source.icc else []
        tifffile.imwrite(
            tmp, np.ascontiguousarray(arr), photometric="rgb", compression="zlib",
            extrasamples=("unassalpha",) if alpha is not None else None, extratags=extratags,
            software=software,  # tifffile's own Software tag: the one piece of EXIF it writes
        )
        if own_exif:  # only when the input had EXIF to lose
            notes.append("EXIF not written to 16-bit colour TIFF")
        return notes
    raise ValueError(f"cannot write 16-bit colour {suffix} files")


def exif_with_software(exif: bytes | None, software: str) -> bytes:
    """``exif`` (or an empty EXIF block) with tag 0x0131, Software, set to ``software``."""
    block = Image.Exif()
    if exif:
        block.load(exif)
    block[_EXIF_SOFTWARE] = software
    return block.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_metadata(png: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks after IHDR (both must precede the image data)."""
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + chunks + png[ihdr_end:]
