"""Small file-system helpers: atomic, durable writes with normal permissions; leftovers; hashes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

#: what ``atomic_path`` appends to its temporary files; a run removes its own leftovers by it
PART_SUFFIX = ".part"


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (briefly process-wide)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` survive a power cut (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and Windows) refuse fsync on a folder: nothing more to do
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A killed or failing writer leaves ``target`` as it was (absent or the previous version), never
    half-written: the temporary file is flushed to disk (fsync) before the rename and the folder
    after it, so a power cut cannot leave an empty file under the final name either. The file gets
    the permissions a plain ``open(target, "w")`` would give (0666 minus the umask, or the mode of
    the file it replaces), not ``mkstemp``'s 0600. The temporary name is hidden
    (``.<stem>.<random><suffix>.part``) and keeps the target's extension (``suffix``) so writers
    that pick a format from it still work; ``remove_leftovers`` finds the ones a kill left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=(suffix if suffix is not None else target.suffix) + PART_SUFFIX,
        dir=target.parent,
    )
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o666 & ~current_umask()
    try:
        os.fchmod(fd, mode)
    except (AttributeError, OSError):  # no fchmod (Windows): the default mode stands
        pass
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # writers that delete and recreate the path get a fresh 0666 & ~umask file: set it again
        os.chmod(tmp_path, mode)
        _fsync_file(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def writable_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why files cannot be created in ``folder`` (or, when it does not exist yet, in the nearest
    folder above it that does, where it would be made), or None when they can.

    Tried, not guessed from permission bits (root ignores them; a read-only mount or a full disk
    does not show in them): a hidden probe file is created and removed at once."""
    target = Path(folder).absolute()
    while not target.exists() and target.parent != target:
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".invrep-probe-", suffix=PART_SUFFIX, dir=target)
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def leftover_owner(name: str) -> str | None:
    """The target file name an ``atomic_path`` temporary named ``name`` was for, else None.

    ``.photo.k3j_x9a2.png.part`` -> ``photo.png``. (Targets with a custom ``suffix`` are not
    recognised; none of ours uses one.)
    """
    if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
        return None
    inner = name[1 : -len(PART_SUFFIX)]
    ext = Path(inner).suffix
    stem, dot, random_part = (inner[: len(inner) - len(ext)] if ext else inner).rpartition(".")
    if not dot or not stem or len(random_part) != 8:  # mkstemp's random part is 8 characters
        return None
    return stem + ext


def remove_leftovers(targets: Iterable[Path]) -> list[Path]:
    """Delete the temporary files a killed ``atomic_path`` left beside any of ``targets``.

    Only temporaries of exactly these targets are touched, so a concurrent writer of other files in
    the same folder (another shard, another tool) keeps its own. Returns what was removed.
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed: list[Path] = []
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if leftover_owner(entry.name) in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
