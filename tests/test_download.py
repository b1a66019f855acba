"""download_file against a local HTTP server (127.0.0.1 only) that can honour or ignore Range,
cut a response short, or serve other bytes than the ones expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from invrep_cli.checkpoint import load_restorer
from invrep_cli.download import download_file
from invrep_cli.errors import WeightsError
from tests.localserver import FileServer, closed_port_url, sha


def test_download_verifies_and_loads(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "tiny.safetensors"
    seen: list[tuple[int, int | None]] = []
    out = download_file(server.url, dest, sha256=sha(weights_bytes), progress=lambda d, t: seen.append((d, t)))
    assert out == dest
    assert dest.read_bytes() == weights_bytes
    assert not (tmp_path / "dl" / "tiny.safetensors.part").exists()
    assert seen[0] == (0, len(weights_bytes)) and seen[-1] == (len(weights_bytes), len(weights_bytes))
    restorer, meta = load_restorer(dest)
    assert meta["sha256"] == sha(weights_bytes)
    assert restorer.config.width == 4


def test_sha256_prefix_and_expected_size(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    dest = download_file(
        server.url,
        tmp_path / "a.safetensors",
        sha256_prefix=sha(weights_bytes)[:10].upper(),
        expected_size=len(weights_bytes),
    )
    assert dest.read_bytes() == weights_bytes
    with pytest.raises(WeightsError, match="starting with 0000"):
        download_file(server.url, tmp_path / "b.safetensors", sha256_prefix="0000")
    with pytest.raises(WeightsError, match=f"expected {len(weights_bytes) + 1} bytes, got {len(weights_bytes)}"):
        download_file(server.url, tmp_path / "c.safetensors", expected_size=len(weights_bytes) + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_corrupt_download_leaves_nothing(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    bad = bytearray(weights_bytes)
    bad[len(bad) // 2] ^= 0xFF
    server.state.body = bytes(bad)
    dest = tmp_path / "tiny.safetensors"
    with pytest.raises(WeightsError) as info:
        download_file(server.url, dest, sha256=sha(weights_bytes))
    message = str(info.value)
    assert server.url in message
    assert f"expected sha256 {sha(weights_bytes)}" in message and f"got {sha(bytes(bad))}" in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    cut = len(weights_bytes) // 3
    server.state.cut_after = cut
    dest = tmp_path / "tiny.safetensors"
    part = tmp_path / "tiny.safetensors.part"
    with pytest.raises(WeightsError, match=re.escape(server.url)):
        download_file(server.url, dest, sha256=sha(weights_bytes))
    assert not dest.exists()
    assert part.read_bytes() == weights_bytes[:cut]

    seen: list[tuple[int, int | None]] = []
    download_file(server.url, dest, sha256=sha(weights_bytes), progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == weights_bytes
    assert not part.exists()
    assert server.state.ranges == [None, f"bytes={cut}-"]
    # the bar of a resumed download starts where the kept bytes end
    assert seen[0] == (cut, len(weights_bytes))


def test_server_ignoring_range_restarts_from_zero(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    server.state.honour_range = False
    part = tmp_path / "tiny.safetensors.part"
    part.write_bytes(weights_bytes[:100])
    dest = download_file(server.url, tmp_path / "tiny.safetensors", sha256=sha(weights_bytes))
    assert dest.read_bytes() == weights_bytes
    assert server.state.ranges == ["bytes=100-"]  # asked to resume, got a 200, wrote the body from zero


def test_stale_part_is_fetched_again_once(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    # a .part left by another version of the file: resuming it cannot verify, one fresh download does
    (tmp_path / "tiny.safetensors.part").write_bytes(b"x" * 50)
    dest = download_file(server.url, tmp_path / "tiny.safetensors", sha256=sha(weights_bytes))
    assert dest.read_bytes() == weights_bytes
    assert server.state.ranges == ["bytes=50-", None]


def test_complete_part_gets_416_and_is_verified(server: FileServer, weights_bytes: bytes, tmp_path: Path) -> None:
    (tmp_path / "tiny.safetensors.part").write_bytes(weights_bytes)
    dest = download_file(server.url, tmp_path / "tiny.safetensors", sha256=sha(weights_bytes))
    assert dest.read_bytes() == weights_bytes
    assert server.state.ranges == [f"bytes={len(weights_bytes)}-"]


def test_server_absent_names_url(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(WeightsError) as info:
        download_file(url, tmp_path / "x.safetensors", timeout=5)
    assert url in str(info.value) and "connection failed" in str(info.value)
    assert not (tmp_path / "x.safetensors").exists()


def test_http_error_keeps_part(server: FileServer, tmp_path: Path) -> None:
    part = tmp_path / "tiny.safetensors.part"
    part.write_bytes(b"abc")
    url = server.url.replace("tiny.safetensors", "missing.safetensors")
    with pytest.raises(WeightsError, match="HTTP 404"):
        download_file(url, tmp_path / "tiny.safetensors")
    assert part.read_bytes() == b"abc"
