"""Image I/O: bit depth, alpha, gray, EXIF orientation, ICC, bad files, atomic writes."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from invrep_cli import imageio
from invrep_cli.errors import ImageError
from invrep_cli.imageio import decode_image, output_suffix, read_image, write_image


@pytest.fixture(scope="module")
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _u8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _u16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 65536, shape, dtype=np.uint16)


def _cv2_write(path: Path, arr: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix, arr)
    assert ok
    path.write_bytes(buf.tobytes())


def _cv2_read(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)


def test_8bit_rgb_round_trip_is_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    arr = _u8(rng, (9, 13, 3))
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert (img.bit_depth, img.mode, img.pixels.shape, img.alpha) == (8, "RGB", (9, 13, 3), None)
    write_image(tmp_path / "b.png", img.pixels, img)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("alpha", [False, True])
def test_16bit_colour_round_trip(tmp_path: Path, rng: np.random.Generator, suffix: str, alpha: bool) -> None:
    bgr = _u16(rng, (7, 11, 4 if alpha else 3))
    _cv2_write(tmp_path / f"in{suffix}", bgr)
    img = read_image(tmp_path / f"in{suffix}")
    assert img.bit_depth == 16 and img.mode == ("RGBA;16" if alpha else "RGB;16")
    # stored as BGR(A) by OpenCV: the decoded pixels must be in RGB order
    assert np.array_equal(np.rint(img.pixels[..., 0] * 65535).astype(np.uint16), bgr[..., 2])
    write_image(tmp_path / f"out{suffix}", img.pixels, img)
    assert np.array_equal(_cv2_read(tmp_path / f"out{suffix}"), bgr)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_round_trip(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    gray = _u16(rng, (6, 5))
    Image.fromarray(gray).save(tmp_path / f"g{suffix}")
    img = read_image(tmp_path / f"g{suffix}")
    assert (img.bit_depth, img.mode, img.pixels.shape) == (16, "L;16", (6, 5, 1))
    write_image(tmp_path / f"o{suffix}", img.pixels, img)
    out = Image.open(tmp_path / f"o{suffix}")
    assert out.mode == "I;16" and np.array_equal(np.asarray(out), gray)


def test_gray_stays_gray_and_alpha_untouched(tmp_path: Path, rng: np.random.Generator) -> None:
    la = _u8(rng, (8, 8, 2))
    Image.fromarray(la).save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.mode == "LA" and img.pixels.shape == (8, 8, 1)
    write_image(tmp_path / "o.png", 1.0 - img.pixels, img)  # colour changed, alpha must not be
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert Image.open(tmp_path / "o.png").mode == "LA"
    assert np.array_equal(out[..., 1], la[..., 1]) and np.array_equal(out[..., 0], 255 - la[..., 0])

    rgba = _u8(rng, (8, 8, 4))
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    img = read_image(tmp_path / "rgba.png")
    write_image(tmp_path / "o2.webp", img.pixels, img)
    assert Image.open(tmp_path / "o2.webp").mode == "RGBA"
    notes = write_image(tmp_path / "o3.jpg", img.pixels, img)
    assert any("alpha dropped" in n for n in notes) and Image.open(tmp_path / "o3.jpg").mode == "RGB"


def test_exif_orientation_applied_and_reset(tmp_path: Path, rng: np.random.Generator, icc: bytes) -> None:
    arr = _u8(rng, (6, 10, 3))
    pil = Image.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "invrep-test"  # Make: must survive
    pil.save(tmp_path / "o.png", exif=exif, icc_profile=icc)
    img = read_image(tmp_path / "o.png")
    assert img.pixels.shape == (10, 6, 3)
    assert np.array_equal(np.rint(img.pixels * 255).astype(np.uint8), np.rot90(arr, -1))
    for suffix in (".png", ".jpg", ".tif", ".webp"):
        write_image(tmp_path / f"out{suffix}", img.pixels, img)
        out = Image.open(tmp_path / f"out{suffix}")
        assert out.size == (6, 10)
        assert out.getexif().get(0x0112) == 1 and out.getexif().get(0x010F) == "invrep-test", suffix
        assert out.info.get("icc_profile") == icc, suffix


def test_exif_orientation_on_16bit_colour(tmp_path: Path, rng: np.random.Generator, icc: bytes) -> None:
    bgr = _u16(rng, (5, 7, 3))
    ok, buf = cv2.imencode(".png", bgr)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise
    data = imageio._png_with_metadata(buf.tobytes(), icc, exif.tobytes())
    (tmp_path / "c.png").write_bytes(data)
    img = read_image(tmp_path / "c.png")
    expected = np.rot90(bgr[..., ::-1], 1)
    assert np.array_equal(np.rint(img.pixels * 65535).astype(np.uint16), expected)
    assert img.icc == icc
    write_image(tmp_path / "out.png", img.pixels, img)
    assert Image.open(tmp_path / "out.png").info.get("icc_profile") == icc
    assert np.array_equal(_cv2_read(tmp_path / "out.png"), expected[..., ::-1])


def test_palette_and_cmyk_are_converted_with_a_note(tmp_path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(_u8(rng, (8, 8, 3))).convert("P").save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.mode == "RGB" and any("palette" in n for n in img.notes)
    Image.fromarray(_u8(rng, (8, 8, 3))).convert("CMYK").save(tmp_path / "c.jpg")
    img = read_image(tmp_path / "c.jpg")
    assert img.mode == "RGB" and any("CMYK" in n for n in img.notes)


def test_16bit_into_8bit_formats_is_noted(tmp_path: Path, rng: np.random.Generator) -> None:
    _cv2_write(tmp_path / "c.png", _u16(rng, (4, 4, 3)))
    img = read_image(tmp_path / "c.png")
    notes = write_image(tmp_path / "o.jpg", img.pixels, img)
    assert any("8-bit" in n for n in notes)


def test_non_ascii_paths(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    _cv2_write(tmp_path / "x.png", _u16(rng, (4, 4, 3)))
    (folder / "ÿ.png").write_bytes((tmp_path / "x.png").read_bytes())
    img = read_image(folder / "ÿ.png")
    write_image(folder / "é.tif", img.pixels, img)
    write_image(folder / "é.png", img.pixels, img)
    assert read_image(folder / "é.tif").bit_depth == 16 and read_image(folder / "é.png").bit_depth == 16


def _png_bytes(rng: np.random.Generator, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_u8(rng, (size, size, 3))).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_files_each_raise_one_image_error(tmp_path: Path, rng: np.random.Generator) -> None:
    good = _png_bytes(rng)
    garbage = bytes(rng.integers(0, 256, len(good) - 40, dtype=np.uint8))
    cases = {
        "zero.png": (b"", "empty"),
        "text.png": (b"this is not an image\n", "not a readable image"),
        "truncated.png": (good[: len(good) // 2], "cannot decode"),
        "corrupt.png": (good[:40] + garbage, "not a readable image|cannot decode"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=reason) as info:
            read_image(tmp_path / name)
        assert info.value.path == tmp_path / name and name in str(info.value)
    Image.fromarray(rng.random((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ImageError, match="unsupported pixel mode"):
        read_image(tmp_path / "float.tif")
    with pytest.raises(ImageError, match="cannot read file"):
        read_image(tmp_path / "missing.png")


def test_decompression_bomb_refused(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_bytes(rng, 32)
    with pytest.raises(ImageError, match="decompression-bomb"):
        decode_image(data, "bomb.png", max_pixels=1000)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression-bomb"):
        decode_image(data, "bomb.png")
    # Pillow's own error (over twice its global limit) becomes the same ImageError
    monkeypatch.setattr(imageio, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(data, "bomb.png")


def test_crash_mid_write_leaves_no_partial_output(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(_u8(rng, (8, 8, 3))).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()

    def crash(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"\x89PNG\r\n\x1a\n partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash)
    with pytest.raises(ImageError, match="disk full"):
        write_image(out / "a.png", img.pixels, img)
    assert list(out.iterdir()) == []


def test_output_suffix() -> None:
    assert output_suffix(".PNG", "keep") == ".PNG"
    assert output_suffix(".gif", "keep") == ".png"
    assert output_suffix(".png", "jpg") == ".jpg" and output_suffix(".jpg", "tif") == ".tif"
    with pytest.raises(ValueError):
        output_suffix(".png", "gif")
