"""A local HTTP file server on 127.0.0.1 (Range support, truncation, corruption) and the fixtures
that serve a tiny restorer file, shared by the download and weights tests."""

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

from invrep_cli.checkpoint import save_restorer
from invrep_cli.config import ModelConfig
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

