"""Atomic writes: normal permissions, durable renames, leftovers a kill leaves behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from invrep_cli import fsutil
from invrep_cli.fsutil import atomic_path, leftover_owner, remove_leftovers


@pytest.fixture
def umask_022() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_gets_umask_permissions_not_0600(tmp_path: Path, umask_022: object) -> None:
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "a.txt") == 0o644
    os.umask(0o027)
    with atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "b.txt") == 0o640
    # replacing a file keeps its mode, as a plain open(..., "w") would
    os.chmod(tmp_path / "a.txt", 0o664)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("y")
    assert _mode(tmp_path / "a.txt") == 0o664 and (tmp_path / "a.txt").read_text() == "y"


def test_atomic_write_fsyncs_file_before_rename_and_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append("rename")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"data")
    assert events == ["file", "rename", "dir"]


def test_leftover_names_and_removal(tmp_path: Path) -> None:
    assert leftover_owner(".img_000.ab_d1x9z.png.part") == "img_000.png"
    assert leftover_owner(".my.photo.k3j_x9a2.jpg.part") == "my.photo.jpg"
    assert leftover_owner("img.png") is None and leftover_owner(".x.part") is None
    ours = tmp_path / ".img_000.ab_d1x9z.png.part"
    foreign = tmp_path / ".other.ab_d1x9z.png.part"
    for p in (ours, foreign):
        p.write_bytes(b"")
    assert remove_leftovers([tmp_path / "img_000.png"]) == [ours]
    assert not ours.exists() and foreign.exists()
