"""download_file against a local HTTP server (127.0.0.1 only) that can honour or ignore Range,
cut a response short, or serve other bytes than the ones expected."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from invrep_cli.checkpoint import load_restorer, save_restorer
from invrep_cli.config import ModelConfig
from invrep_cli.download import download_file
from invrep_cli.errors import WeightsError
from invrep_cli.models import build_restorer


@dataclass
class ServerState:
    body: bytes
    path: str = "/tiny.safetensors"
    honour_range: bool = True
    #: close the connection after this many body bytes, on the next request only
    cut_after: int | None = None
    #: the Range header of every request (None when absent), in order
    ranges: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.ranges.append(self.headers.get("Range"))
        if self.path != state.path:
            self.send_error(404)
            return
        body, start = state.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and state.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if state.cut_after is not None:
            # promise the whole payload, send part of it, hang up: a dropped connection
            cut, state.cut_after = state.cut_after, None
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FileServer:
    """A file served on 127.0.0.1 from a thread; ``url`` points at it."""

    def __init__(self, body: bytes) -> None:
        self.state = ServerState(body)
        self._server = _Server(self.state)
        self._stopped = False
        # a short poll so stop() returns quickly
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.state.path}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny.safetensors"


def tiny_weights_bytes(tiny_config: ModelConfig, folder: Path) -> bytes:
    """A real restorer weights file (a few KB) so a download can be loaded, not just compared."""
    path = save_restorer(build_restorer(tiny_config), folder / "source.safetensors")
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def weights_bytes(tiny_config: ModelConfig, tmp_path: Path) -> bytes:
    return tiny_weights_bytes(tiny_config, tmp_path)


@pytest.fixture
def server(weights_bytes: bytes) -> Iterator[FileServer]:
    srv = FileServer(weights_bytes)
    yield srv
    srv.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
