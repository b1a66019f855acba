"""Verified, resumable downloads of single files (weights, VGG19 features).

A download goes into ``<dest>.part`` and is renamed onto ``dest`` only after its size and checksum
are right, so ``dest`` is never half-written or unverified. A network failure keeps the ``.part``
so the next call resumes it with an HTTP Range request; a checksum failure deletes it, since
resuming corrupt bytes can never succeed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from invrep_cli.errors import WeightsError
from invrep_cli.fsutil import sha256_file

CHUNK = 1 << 16
# identity so the bytes on the wire are the bytes of the file: Range offsets and checksums
# refer to them, and a transparently gunzipped body could not be resumed
_REQUEST_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "invrep"}


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200); ``bytes */200`` -> (None, 200); total None if ``*``."""
    if not value or not value.startswith("bytes "):
        return None, None
    spec, _, total_s = value[6:].partition("/")
    total = int(total_s) if total_s.strip().isdigit() else None
    start_s = spec.partition("-")[0].strip()
    start = int(start_s) if start_s.isdigit() else None
    return start, total


def _chunks(resp: Any) -> Iterator[bytes]:
    encoding = resp.headers.get("Content-Encoding", "identity").lower()
    if encoding not in ("", "identity"):
        # a server that compresses although identity was asked for: let requests decode it
        yield from resp.iter_content(CHUNK)
        return
    # raw reads hand over every byte that arrived before a broken connection, so the .part keeps
    # them; urllib3's decoding read() would discard a short last chunk when the error follows it
    while block := resp.raw.read(CHUNK, decode_content=False):
        yield block


def _problems(part: Path, sha256: str | None, sha256_prefix: str | None, expected_size: int | None) -> list[str]:
    """What is wrong with a complete ``.part`` (size, checksum); empty when it is the right file."""
    problems = []
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        problems.append(f"expected {expected_size} bytes, got {size}")
    if sha256 or sha256_prefix:
        got = sha256_file(part)
        if sha256 and got != sha256.lower():
            problems.append(f"expected sha256 {sha256.lower()}, got {got}")
        if sha256_prefix and not got.startswith(sha256_prefix.lower()):
            problems.append(f"expected sha256 starting with {sha256_prefix.lower()}, got {got}")
    return problems


def download_file(
    url: str,
    dest: Path,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30,
    expected_size: int | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part`` if present), verify it, rename it into place.

    ``sha256`` is the full hex digest, ``sha256_prefix`` a hex prefix of it (torchvision puts one in
    its file names); either or both may be given, an empty string counts as not given.
    ``progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive, starting at the resumed
    offset. ``timeout`` is per connect/read, not for the whole transfer.

    Raises WeightsError: on a bad size or checksum (the file is deleted), or naming the URL and the
    reason on a connection error, timeout or HTTP error (the ``.part`` is kept for resumption).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    resumed = _transfer(url, part, progress, timeout, expected_size)
    problems = _problems(part, sha256, sha256_prefix, expected_size)
    if problems and resumed:
        # the kept prefix may be from another version of the file (or a different server behind the
        # same URL): one fresh download before calling the file corrupt
        part.unlink(missing_ok=True)
        _transfer(url, part, progress, timeout, expected_size)
        problems = _problems(part, sha256, sha256_prefix, expected_size)
    if problems:
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"download of {url} is corrupt ({'; '.join(problems)}); the bad file was deleted, "
            "run again to download it afresh"
        )
    os.replace(part, dest)
    return dest


def _transfer(
    url: str, part: Path, progress: Callable[[int, int | None], None] | None, timeout: float, expected_size: int | None
) -> bool:
    """Complete ``part`` from ``url``, appending to what is there if the server honours Range.

    Returns whether earlier bytes were kept (a resumed download). Raises WeightsError on network
    errors and short bodies, leaving ``part`` in place.
    """
    import requests
    import urllib3

    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        # longer than the real file: not a prefix of it, start over
        part.unlink()
        offset = 0
    if expected_size is not None and offset == expected_size and offset > 0:
        # a previous run got every byte but stopped before verifying: no request needed
        return True

    headers = dict(_REQUEST_HEADERS)
    if offset:
        headers["Range"] = f"bytes={offset}-"
    restart = False
    done = offset
    total: int | None = None
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True) as resp:
            if resp.status_code == 416 and offset:
                # nothing left past our offset: complete if the server's length is ours, else start over
                _, total = _content_range(resp.headers.get("Content-Range"))
                restart = total != offset
            else:
                resp.raise_for_status()
                if resp.status_code == 206 and offset:
                    start, total = _content_range(resp.headers.get("Content-Range"))
                    # a range other than the one asked for cannot be appended; fetch it whole
                    restart = start != offset
                    mode = "ab"
                else:
                    # 200: the server ignored Range (or there was no .part): the body is the whole file
                    offset = done = 0
                    mode = "wb"
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                if total is None:
                    total = expected_size
                if not restart:
                    if progress is not None:
                        progress(done, total)
                    with open(part, mode) as f:
                        for block in _chunks(resp):
                            f.write(block)
                            done += len(block)
                            if progress is not None:
                                progress(done, total)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise WeightsError(f"download of {url} failed: {_reason(exc)} (partial file kept in {part})") from exc
    except OSError as exc:
        raise WeightsError(f"download of {url} failed: cannot write {part}: {exc}") from exc

    if restart:
        # offset is 0 in the call below, so this recursion happens at most once
        part.unlink(missing_ok=True)
        _transfer(url, part, progress, timeout, expected_size)
        return False
    if total is not None and done < total:
        raise WeightsError(
            f"download of {url} failed: connection closed after {done} of {total} bytes "
            f"(partial file kept in {part}; run again to resume)"
        )
    return offset > 0 and done > 0


def _reason(exc: BaseException) -> str:
    """A one-line reason: the HTTP status, or the innermost cause of a connection failure."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}".strip()
    if isinstance(exc, requests.Timeout):
        return f"timed out ({exc.__class__.__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed ({exc.__class__.__name__}: {exc})"
    return f"{exc.__class__.__name__}: {exc}"
