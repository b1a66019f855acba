"""What a restore run reads and writes: IN (a file, a folder or a glob) -> jobs, and shards.

Every entry of an input folder is accounted for: it becomes a job, or it is listed as ``ignored``
with a reason (not an image, hidden, not a regular file, a folder already visited through a
symlink), or as a failure (a broken symlink or symlink loop with an image name, a folder that
cannot be listed). Nothing is dropped silently.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from invrep_cli.distenv import dist_from_env
from invrep_cli.errors import UsageError
from invrep_cli.imageio import FORMAT_CHOICES, IMAGE_SUFFIXES, output_suffix


@dataclass
class FileJob:
    source: Path
    #: output path relative to ``record_dir`` (the record key)
    rel: Path
    output: Path


@dataclass
class Inputs:
    """What a scan of IN found."""

    #: (file, path relative to ``base``), sorted by that path
    files: list[tuple[Path, Path]]
    base: Path
    #: entries passed over on purpose: {"path", "reason"}
    ignored: list[dict[str, str]] = field(default_factory=list)
    #: entries that should have been inputs but cannot be read: {"path", "reason"}
    failed: list[dict[str, str]] = field(default_factory=list)


@dataclass
class JobPlan:
    """IN and OUT turned into work: every job, where the record lives, what was left out and why."""

    jobs: list[FileJob]
    record_dir: Path
    failed: list[dict[str, str]]
    ignored: list[dict[str, str]]

    def shard(self, shard: tuple[int, int] | None) -> JobPlan:
        """This shard's part: ``jobs[K::N]`` (and its share of the failures and ignored entries)."""
        if not shard:
            return self
        k, n = shard
        return JobPlan(self.jobs[k::n], self.record_dir, self.failed[k::n], self.ignored[k::n])


def _has_magic(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _unreadable_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (its target does not exist)"
    return f"cannot read ({exc.strerror or exc})"


def _walk(root: Path) -> Inputs:
    """Recursive scan of a folder with os.scandir, following folder symlinks once each."""
    found: list[tuple[Path, Path]] = []
    ignored: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> None:
        try:
            info = folder.stat()
            key = (info.st_dev, info.st_ino)
            if key in seen:
                reason = "folder already scanned (a symlink loop, or a second link to it)"
                ignored.append({"path": str(folder), "reason": reason})
                return
            seen.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            failed.append({"path": str(folder), "reason": f"cannot list folder ({_unreadable_reason(exc)})"})
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                # our records and temporaries, .git, macOS ._ files: never inputs
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                ignored.append({"path": str(path), "reason": f"hidden {kind}"})
                continue
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
                if not (is_dir or is_file):
                    os.stat(path)  # raises for broken links and loops: say which
            except OSError as exc:
                target = failed if _is_image_name(entry.name) else ignored
                target.append({"path": str(path), "reason": _unreadable_reason(exc)})
                continue
            if is_dir:
                visit(path)
            elif not is_file:
                ignored.append({"path": str(path), "reason": "not a regular file"})
            elif _is_image_name(entry.name):
                found.append((path, path.relative_to(root)))
            else:
                ignored.append({"path": str(path), "reason": f"not an image ({', '.join(IMAGE_SUFFIXES)})"})

    visit(root)
    return Inputs(sorted(found, key=lambda item: item[1].as_posix()), root, ignored, failed)


def collect_inputs(spec: str | os.PathLike[str]) -> Inputs:
    """IN (file, folder or glob) -> the image files, their paths relative to a base, and the rest.

    A folder is scanned recursively for image extensions; a glob's base is its longest
    wildcard-free parent folder; a single file is taken whatever its extension.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return Inputs([(path, Path(path.name))], path.parent)
    if path.is_dir():
        return _walk(path)
    if _has_magic(text):
        parts = path.parts
        fixed = list(parts[: next(i for i, p in enumerate(parts) if _has_magic(p))])
        base = Path(*fixed) if fixed else Path(".")
        inputs = Inputs([], base)
        for match in sorted(glob.glob(text, recursive=True)):
            m = Path(match)
            rel = m.relative_to(base)
            if m.is_dir():
                continue  # a folder the pattern passed through, not an entry it names
            if any(part.startswith(".") for part in rel.parts):  # only when the pattern asks for dot names
                inputs.ignored.append({"path": str(m), "reason": "hidden file"})
                continue
            if not m.is_file():
                try:
                    os.stat(m)
                    reason = "not a regular file"
                except OSError as exc:
                    reason = _unreadable_reason(exc)
                (inputs.failed if _is_image_name(m.name) else inputs.ignored).append({"path": str(m), "reason": reason})
            elif _is_image_name(m.name):
                inputs.files.append((m, rel))
            else:
                inputs.ignored.append({"path": str(m), "reason": f"not an image ({', '.join(IMAGE_SUFFIXES)})"})
        inputs.files.sort(key=lambda item: item[1].as_posix())
        return inputs
    raise UsageError(f"input not found: {text}")


def plan_jobs(input_spec: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str = "keep") -> JobPlan:
    """Inputs -> jobs, the record folder, and what was left out (failed or ignored, with reasons).

    OUT may be a folder, or a file name when IN is a single file. OUT may not be IN nor inside an
    input folder; for a glob, OUT may hold none of the files it matches and none of the planned
    outputs may be something the glob would match on the next run (``glob_matches``): both are a
    UsageError before anything is read. An output that would land on an input is a failure, never
    a write.
    """
    if fmt not in FORMAT_CHOICES:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMAT_CHOICES)}")
    in_path, out_path = Path(input_spec), Path(out)
    inputs = collect_inputs(input_spec)
    out_resolved = out_path.resolve()
    if in_path.is_dir():
        in_resolved = in_path.resolve()
        if out_resolved == in_resolved or in_resolved in out_resolved.parents:
            raise UsageError(f"OUT ({out}) may not be IN or inside it: outputs would be read as inputs next time")
    single_file_out = in_path.is_file() and out_path.suffix.lower() in IMAGE_SUFFIXES and not out_path.is_dir()
    if in_path.is_file():
        if out_resolved == in_path.resolve():
            raise UsageError(f"OUT ({out}) is the input file: an input is never overwritten")
        if not single_file_out and out_path.is_file():
            raise UsageError(f"OUT ({out}) is an existing file; give a folder or an image file name")
    elif out_path.is_file():
        raise UsageError(f"OUT ({out}) is a file; restoring many images needs a folder")
    if not inputs.files and not inputs.failed:
        raise UsageError(f"no images found in {input_spec} (looked for {', '.join(IMAGE_SUFFIXES)})")

    record_dir = out_path.parent if single_file_out else out_path
    input_set = {f.resolve() for f, _ in inputs.files}
    jobs: list[FileJob] = []
    failures = list(inputs.failed)
    claimed: dict[Path, Path] = {}
    is_glob = not in_path.exists() and _has_magic(os.fspath(input_spec))
    for source, rel in inputs.files:
        out_rel = Path(out_path.name) if single_file_out else rel.with_suffix(output_suffix(rel.suffix, fmt))
        target = record_dir / out_rel
        if is_glob and (out_resolved in source.resolve().parents or glob_matches(os.fspath(input_spec), target)):
            # the glob reaches into OUT: this run's outputs (or an earlier one's) would be read as
            # inputs by the next run of the same command; refused before anything is written
            raise UsageError(
                f"OUT ({out}) is where {os.fspath(input_spec)!r} looks: outputs such as {target} would be read as "
                "inputs by the next run; choose an OUT outside what the pattern matches"
            )
        if target.resolve() in input_set:
            failures.append({"path": str(source), "reason": f"output {target} would overwrite an input"})
            continue
        if out_rel in claimed:
            reason = f"output {target} is also the output of {claimed[out_rel]}"
            failures.append({"path": str(source), "reason": reason})
            continue
        claimed[out_rel] = source
        jobs.append(FileJob(source, out_rel, target))
    return JobPlan(jobs, record_dir, failures, inputs.ignored)


def glob_matches(pattern: str, path: str | os.PathLike[str]) -> bool:
    """Whether ``glob.glob(pattern, recursive=True)`` would list ``path`` once it exists.

    Both sides are made absolute and resolved up to the pattern's wildcard-free base; the rest is
    matched part by part as ``glob`` does: ``**`` alone spans any number of folders (none
    included), other parts match one name with ``fnmatch``, and wildcards never match hidden names.
    """
    parts = Path(pattern).parts
    first = next((i for i, p in enumerate(parts) if _has_magic(p)), len(parts))
    base = Path(*parts[:first]).resolve() if first else Path(".").resolve()
    try:
        rel = Path(path).resolve().relative_to(base).parts
    except ValueError:
        return False
    return _match_parts(list(parts[first:]), list(rel))


def _match_parts(pattern: list[str], names: list[str]) -> bool:
    if not pattern:
        return not names
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # zero folders, or one more (never a hidden one) and still inside the **
        if _match_parts(rest, names):
            return True
        return bool(names) and not names[0].startswith(".") and _match_parts(pattern, names[1:])
    if not names:
        return False
    if names[0].startswith(".") and _has_magic(head) and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _match_parts(rest, names[1:])


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (0-based K, like torchrun ranks) -> (K, N)."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text!r}: need N >= 1 and 0 <= K < N")
    return index, count


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) under torchrun, else None (``distenv`` reads the environment)."""
    info = dist_from_env(env)
    return (info.rank, info.world_size) if info.enabled else None


def device_for_rank(device: str, env: dict[str, str] | None = None) -> str:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK when the device is auto or cuda."""
    info = dist_from_env(env)
    if device in ("auto", "cuda") and info.enabled:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{info.local_rank % torch.cuda.device_count()}"
    return device
