"""One image -> restored image (tiles through a Backend), and resumable folder runs.

Folder runs behave like a build tool:
- IN is a file, a folder (recursive; sub-folders are kept under OUT) or a glob;
- each output directory keeps a record, ``OUT/.invrep-restore.json``, keyed by the output's path
  relative to OUT: the sha256 of the input bytes, the sha256 of the weights, the settings that
  change pixels (backend, precision, requested tile, overlap, context margin, format) and the
  output's size. An output is skipped only when its record matches and the file is still there
  with that size; missing, changed or foreign outputs are (re)written. So a killed batch resumes
  by re-running the same command, and a change of weights or settings re-processes what it
  affects. ``overwrite=True`` re-processes everything;
- outputs are written atomically (temporary file, fsync, rename, fsync of the folder): never
  half-written, with the permissions a plain write gives; each is recorded (an fsynced journal
  line) right after its rename, so ``kill -9`` at any moment loses at most the image in flight,
  and the next run removes the temporaries such a kill leaves beside its own outputs;
- a file that cannot be read, decoded or written is one failure naming the file and the reason;
  the batch goes on, and failures are listed in the summary and in ``OUT/.invrep-failures.txt``;
- shards (``--shard K/N`` or torchrun's RANK/WORLD_SIZE) take ``files[K::N]`` of the sorted list
  and keep their own record and failure files (``.invrep-restore.KofN.json``), so ranks never
  write the same file; every rank reads all records;
- decoding the next image and encoding the previous one run in worker threads while the current
  one is restored.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli.backends import Backend, available_ram, is_out_of_memory
from invrep_cli.errors import ImageError, InvrepError, UsageError
from invrep_cli.fsutil import atomic_path, fsync_dir, remove_leftovers
from invrep_cli.imageio import FORMAT_CHOICES, IMAGE_SUFFIXES, LoadedImage, decode_image, output_suffix, write_image
from invrep_cli.tiling import plan_tiles, round_down, tiled_apply

RECORD_NAME = ".invrep-restore"
FAILURES_NAME = ".invrep-failures"
RECORD_VERSION = 1
#: smallest tile an out-of-memory retry goes down to
MIN_TILE = 32
#: largest automatic tile: beyond this, bigger tiles gain little and cost latency. On CPU 512 keeps
#: a 6000x4000 photo under 2 GB peak (benchmarks/peak_memory.py: 1.79 GB at 512, 2.66 GB at 1024)
MAX_AUTO_TILE = {"cuda": 2048, "cpu": 512}
#: share of free memory an automatic tile plan may use
MEMORY_SHARE = {"cuda": 0.6, "cpu": 0.4}
#: the record journal is folded into the JSON record after this many lines (and at the end)
_JOURNAL_FOLD_LINES = 500
JOURNAL_SUFFIX = ".jsonl"

Message = Callable[[str], None]


@dataclass
class RestoreOptions:
    """What ``invrep restore`` was asked to do (built by the CLI)."""

    #: core tile size in px; None = chosen from free memory; 0 = whole image in one piece
    tile: int | None = None
    #: px over which neighbouring tiles are blended
    tile_overlap: int = 16
    #: keep | png | jpg | tif | webp
    fmt: str = "keep"
    #: re-process every file even when its record matches
    overwrite: bool = False
    #: (index, count), 0-based: this process takes files[index::count]
    shard: tuple[int, int] | None = None
    #: tiles per batch; None = from free memory on CUDA, 1 on CPU
    batch_size: int | None = None
    #: decompression-bomb limit in pixels; None = imageio.MAX_PIXELS
    max_pixels: int | None = None


@dataclass(frozen=True)
class TileChoice:
    tile: int
    batch_size: int
    #: why this tile, for the log (e.g. "from 61.2 GiB free on cuda")
    reason: str

    def describe(self, margin: int, overlap: int) -> str:
        size = "whole image" if self.tile == 0 else f"tile {self.tile} px"
        return f"{size}, overlap {overlap}, context {margin} px, {self.batch_size} per batch ({self.reason})"


@dataclass
class FileJob:
    source: Path
    #: output path relative to ``record_dir`` (the record key)
    rel: Path
    output: Path


@dataclass
class ProgressEvent:
    done: int
    total: int
    processed: int
    skipped: int
    failed: int
    megapixels: float
    mp_per_s: float
    eta_s: float | None
    path: str
    #: "processed" | "skipped" | "failed"
    status: str


@dataclass
class _Prepared:
    job: FileJob
    input_sha256: str
    image: LoadedImage | None  # None when skipped


@dataclass
class RestoreSummary:
    processed: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    #: files a folder scan passed over (not images by extension)
    ignored: int = 0
    seconds: float = 0.0
    megapixels: float = 0.0
    mp_per_s: float = 0.0
    device: str = ""
    backend: str = ""
    precision: str = ""
    tile: dict[str, Any] = field(default_factory=dict)
    out: str = ""
    shard: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- one image


def restore_pixels(
    pixels: np.ndarray, backend: Backend, tile: int = 0, overlap: int = 16, batch_size: int = 1
) -> np.ndarray:
    """H x W x C float32 in [0, 1] (C = 1 or 3) -> restored, same shape, through tiles.

    Gray goes through the restorer's own 1-channel path on the torch backend; other backends get
    it replicated to RGB and averaged back.
    """
    h, w, channels = pixels.shape
    plan = plan_tiles(h, w, tile, overlap, backend.context_margin, backend.size_multiple)
    gray_native = getattr(backend, "accepts_gray", backend.name == "torch")
    if channels == 1 and not gray_native:

        def run(batch: np.ndarray) -> np.ndarray:
            return backend.run(np.repeat(batch, 3, axis=1)).mean(axis=1, keepdims=True)

    else:
        run = backend.run
    return tiled_apply(pixels, run, plan, batch_size)


def restore_image(
    image: LoadedImage, backend: Backend, tile: int = 0, overlap: int = 16, batch_size: int = 1
) -> np.ndarray:
    """A decoded image's colour, restored (alpha and metadata stay in ``image`` for the writer)."""
    return restore_pixels(image.pixels, backend, tile, overlap, batch_size)


def _backend_memory(backend: Backend) -> tuple[int, str]:
    """(free bytes, "cuda" | "cpu") for the device the backend runs on."""
    free = getattr(backend, "free_memory", None)
    on_cuda = "cuda" in backend.device.lower()
    if callable(free):
        return int(free()), "cuda" if on_cuda else "cpu"
    if on_cuda:
        try:
            import torch

            return int(torch.cuda.mem_get_info()[0]), "cuda"
        except Exception:
            pass
    return available_ram(), "cpu"


def choose_tile(
    backend: Backend, overlap: int = 16, tile: int | None = None, batch_size: int | None = None
) -> TileChoice:
    """The tile plan: ``tile`` as given (0 = whole image) or the largest that fits in free memory.

    Memory per input pixel is measured on CUDA (``bytes_per_pixel`` of the torch backend) or
    estimated; the tile's input is its core plus overlap plus twice the context margin. On CUDA
    several tiles run per batch.
    """
    free, kind = _backend_memory(backend)
    bpp_fn = getattr(backend, "bytes_per_pixel", None)
    bpp = float(bpp_fn()) if callable(bpp_fn) else 2560.0  # lir (width 64) in fp32, estimated
    budget = free * MEMORY_SHARE[kind]
    gib = f"{free / 2**30:.1f} GiB free on {kind}"
    extra = overlap + 2 * backend.context_margin
    if tile is not None:
        side = tile + extra if tile > 0 else 0
        if batch_size is None:
            batch_size = _batch_for(budget, bpp, side) if (kind == "cuda" and side) else 1
        return TileChoice(tile, batch_size, "whole image as asked" if tile == 0 else f"as asked, {gib}")
    wanted_batch = batch_size or (4 if kind == "cuda" else 1)
    side = int(math.sqrt(max(budget, 0) / (bpp * wanted_batch)))
    core = round_down(side - extra, 32)
    core = max(MIN_TILE * 2, min(core, MAX_AUTO_TILE[kind]))
    return TileChoice(core, wanted_batch, f"from {gib}, ~{bpp / 1024:.1f} KiB per pixel")


def _batch_for(budget: float, bpp: float, side: int) -> int:
    return int(max(1, min(8, budget // (bpp * side * side))))


# --------------------------------------------------------------------------- inputs and shards


def _has_magic(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def _visible(rel: Path) -> bool:
    """Dot-files and dot-folders (our records, temporary files, macOS ._ files) are not inputs."""
    return not any(part.startswith(".") for part in rel.parts)


def collect_inputs(spec: str | os.PathLike[str]) -> tuple[list[tuple[Path, Path]], Path, int]:
    """IN (file, folder or glob) -> ([(file, path relative to base)], base, ignored count).

    A folder is scanned recursively for image extensions; a glob's base is its longest
    wildcard-free parent folder; a single file is taken whatever its extension.
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return [(path, Path(path.name))], path.parent, 0
    if path.is_dir():
        found, ignored = [], 0
        for file in path.rglob("*"):
            rel = file.relative_to(path)
            if not file.is_file() or not _visible(rel):
                continue
            if file.suffix.lower() in IMAGE_SUFFIXES:
                found.append((file, rel))
            else:
                ignored += 1
        return sorted(found, key=lambda item: item[1].as_posix()), path, ignored
    if _has_magic(text):
        parts = Path(text).parts
        fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _has_magic(p))]]
        base = Path(*fixed) if fixed else Path(".")
        matches = [Path(m) for m in glob.glob(text, recursive=True)]
        found = [(m, m.relative_to(base)) for m in matches if m.is_file() and _visible(m.relative_to(base))]
        ignored = sum(1 for m, _ in found if m.suffix.lower() not in IMAGE_SUFFIXES)
        found = [(m, r) for m, r in found if m.suffix.lower() in IMAGE_SUFFIXES]
        return sorted(found, key=lambda item: item[1].as_posix()), base, ignored
    raise UsageError(f"input not found: {text}")


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
    """(RANK, WORLD_SIZE) under torchrun, else None."""
    env = dict(os.environ) if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        if world > 1:
            return rank, world
    return None


def device_for_rank(device: str, env: dict[str, str] | None = None) -> str:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK when the device is auto or cuda."""
    env = dict(os.environ) if env is None else env
    if device in ("auto", "cuda") and "LOCAL_RANK" in env and shard_from_env(env):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(env['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def plan_jobs(
    input_spec: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str = "keep"
) -> tuple[list[FileJob], Path, list[dict[str, str]], int]:
    """Inputs -> (jobs, record dir, failures found while planning, ignored count).

    OUT may be a folder, or a file name when IN is a single file. OUT may not be IN nor inside an
    input folder; an output that would land on an input is a failure, never a write.
    """
    if fmt not in FORMAT_CHOICES:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMAT_CHOICES)}")
    in_path, out_path = Path(input_spec), Path(out)
    files, base, ignored = collect_inputs(input_spec)
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
    if not files:
        raise UsageError(f"no images found in {input_spec} (looked for {', '.join(IMAGE_SUFFIXES)})")

    record_dir = out_path.parent if single_file_out else out_path
    input_set = {f.resolve() for f, _ in files}
    jobs: list[FileJob] = []
    failures: list[dict[str, str]] = []
    claimed: dict[Path, Path] = {}
    for source, rel in files:
        if out_resolved in source.resolve().parents:  # a glob reaching into OUT: that is our output
            continue
        if single_file_out:
            out_rel = Path(out_path.name)
        else:
            out_rel = rel.with_suffix(output_suffix(rel.suffix, fmt))
        target = record_dir / out_rel
        if target.resolve() in input_set:
            failures.append({"path": str(source), "reason": f"output {target} would overwrite an input"})
            continue
        if out_rel in claimed:
            reason = f"output {target} is also the output of {claimed[out_rel]}"
            failures.append({"path": str(source), "reason": reason})
            continue
        claimed[out_rel] = source
        jobs.append(FileJob(source, out_rel, target))
    return jobs, record_dir, failures, ignored


# --------------------------------------------------------------------------- records


class RestoreRecord:
    """What produced each output in a directory; decides whether an output is up to date.

    Each output is recorded the moment it is renamed into place: one JSON line appended to a
    journal (``.invrep-restore[.KofN].jsonl``) and fsynced, so ``kill -9`` at any moment loses at
    most the image in flight. ``save`` folds the journal into the JSON file (atomically) and
    empties it; reading replays any journal left by a killed run, ignoring a torn last line.
    """

    def __init__(self, record_dir: Path, shard: tuple[int, int] | None = None) -> None:
        self.record_dir = record_dir
        suffix = f".{shard[0]}of{shard[1]}" if shard else ""
        self.path = record_dir / f"{RECORD_NAME}{suffix}.json"
        self.journal_path = record_dir / f"{RECORD_NAME}{suffix}{JOURNAL_SUFFIX}"
        self.failures_path = record_dir / f"{FAILURES_NAME}{suffix}.txt"
        self.entries: dict[str, dict[str, Any]] = {}  # this process's file
        self.known: dict[str, dict[str, Any]] = {}  # every record file in the directory, newest wins
        self._lock = threading.Lock()
        self._journal: Any = None  # open journal file, once something was recorded
        self._journaled = 0
        names = [RECORD_NAME + "*" + ext for ext in (".json", JOURNAL_SUFFIX)]
        found = {f.with_suffix(".json") for n in names for f in record_dir.glob(n)} if record_dir.is_dir() else set()
        for file in sorted(found):  # a killed first run leaves only a journal: read that too
            entries = self._read(file) | self._read_journal(file.with_suffix(JOURNAL_SUFFIX))
            if file == self.path:
                self.entries = dict(entries)
            self._merge(entries)

    def _merge(self, entries: dict[str, dict[str, Any]]) -> None:
        for key, entry in entries.items():
            if key not in self.known or entry.get("time", 0) >= self.known[key].get("time", 0):
                self.known[key] = entry

    @staticmethod
    def _read(file: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged record only means re-processing, never a wrong skip
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            return {}
        entries = data.get("entries", {})
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _read_journal(file: Path) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            return entries
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # the line a kill tore: that image is simply redone
            if isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("entry"), dict):
                entries[item["key"]] = item["entry"]
        return entries

    def matches(self, rel: Path, input_sha256: str, weights_sha256: str, settings: dict[str, Any]) -> bool:
        with self._lock:
            entry = self.known.get(rel.as_posix())
        if not entry:
            return False
        if (
            entry.get("input_sha256") != input_sha256
            or entry.get("weights_sha256") != weights_sha256
            or entry.get("settings") != settings
        ):
            return False
        output = self.record_dir / rel
        try:
            return output.stat().st_size == entry.get("output_bytes")
        except OSError:
            return False

    def update(self, rel: Path, source: Path, input_sha256: str, weights_sha256: str, settings: dict[str, Any]) -> None:
        """Record one output, durably, now (called right after its rename; thread-safe)."""
        entry = {
            "input": str(source),
            "input_sha256": input_sha256,
            "weights_sha256": weights_sha256,
            "settings": settings,
            "output_bytes": (self.record_dir / rel).stat().st_size,
            "time": time.time(),
        }
        line = json.dumps({"key": rel.as_posix(), "entry": entry}) + "\n"
        with self._lock:
            self.entries[rel.as_posix()] = entry
            self.known[rel.as_posix()] = entry
            if self._journal is None:
                self.record_dir.mkdir(parents=True, exist_ok=True)
                self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
                fsync_dir(self.record_dir)
            self._journal.write(line)
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._journaled += 1
        if self._journaled >= _JOURNAL_FOLD_LINES:
            self.save()

    def save(self) -> None:
        """Fold the journal into the JSON record (atomically), then empty the journal."""
        with self._lock:
            if self._journal is None and not self.journal_path.exists():
                return
            with atomic_path(self.path) as tmp:
                tmp.write_text(
                    json.dumps({"version": RECORD_VERSION, "entries": self.entries}, indent=1), encoding="utf-8"
                )
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            # a kill between the rename and this unlink only replays entries already in the JSON
            self.journal_path.unlink(missing_ok=True)
            self._journaled = 0

    def write_failures(self, failures: list[dict[str, str]]) -> None:
        if not failures:
            self.failures_path.unlink(missing_ok=True)
            return
        with atomic_path(self.failures_path) as tmp:
            tmp.write_text("".join(f"{f['path']}\t{f['reason']}\n" for f in failures), encoding="utf-8")


def pixel_settings(backend: Backend, options: RestoreOptions) -> dict[str, Any]:
    """The settings that change output pixels: a change of any re-processes an output."""
    return {
        "backend": backend.name,
        "precision": backend.precision,
        "tile": "auto" if options.tile is None else options.tile,
        "overlap": options.tile_overlap,
        "margin": backend.context_margin,
        "format": options.fmt,
    }


# --------------------------------------------------------------------------- folder runs


class _Runner:
    """State of one run: the current tile (shrinks for good after an out-of-memory retry)."""

    def __init__(self, backend: Backend, choice: TileChoice, overlap: int, message: Message) -> None:
        self.backend = backend
        self.tile = choice.tile
        self.batch_size = choice.batch_size
        self.overlap = overlap
        self.message = message

    def restore(self, image: LoadedImage, source: Path) -> np.ndarray:
        while True:
            try:
                return restore_image(image, self.backend, self.tile, self.overlap, self.batch_size)
            except InvrepError:
                raise
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                release = getattr(self.backend, "release_memory", None)
                if callable(release):
                    release()
                current = self.tile or max(image.height, image.width)
                smaller = round_down(current // 2, self.backend.size_multiple)
                if self.batch_size > 1:
                    self.batch_size = 1
                    self.message(f"out of memory on {source.name}: retrying with 1 tile per batch")
                    continue
                if smaller < MIN_TILE:
                    raise ImageError(source, f"out of memory even with {current} px tiles") from exc
                self.message(f"out of memory on {source.name} with tile {current}: retrying with tile {smaller}")
                self.tile = smaller


def restore_files(
    input_spec: str | os.PathLike[str],
    out: str | os.PathLike[str],
    backend: Backend,
    weights_sha256: str,
    options: RestoreOptions | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_message: Message | None = None,
    tile_choice: TileChoice | None = None,
    planned: tuple[list[FileJob], Path, list[dict[str, str]], int] | None = None,
) -> RestoreSummary:
    """Restore IN into OUT (see the module docstring for skip, record and failure semantics).

    ``tile_choice`` and ``planned`` (``plan_jobs``'s result) let a caller validate paths and print
    the plan before starting; both are computed when absent. Raises UsageError before anything is
    written; per-file problems end up in ``failed``.
    """
    options = options or RestoreOptions()
    message: Message = on_message or (lambda _text: None)
    started = time.perf_counter()
    jobs, record_dir, failures, ignored = planned or plan_jobs(input_spec, out, options.fmt)
    shard = options.shard
    if shard:
        jobs = jobs[shard[0] :: shard[1]]
        failures = failures[shard[0] :: shard[1]]
    choice = tile_choice or choose_tile(backend, options.tile_overlap, options.tile, options.batch_size)
    settings = pixel_settings(backend, options)
    record = RestoreRecord(record_dir, shard)
    # temporaries a killed run left beside this shard's own outputs and records (never another's)
    remove_leftovers([job.output for job in jobs] + [record.path, record.failures_path])
    runner = _Runner(backend, choice, options.tile_overlap, message)
    summary = RestoreSummary(
        failed=list(failures), ignored=ignored, device=backend.device, backend=backend.name,
        out=str(record_dir), shard=f"{shard[0]}/{shard[1]}" if shard else None,
        tile={"tile": choice.tile, "overlap": options.tile_overlap, "margin": backend.context_margin,
              "batch_size": choice.batch_size, "reason": choice.reason},
    )
    total = len(jobs)
    compute_seconds = 0.0

    def prepare(job: FileJob) -> _Prepared:
        try:
            data = job.source.read_bytes()
        except OSError as exc:
            raise ImageError(job.source, f"cannot read file ({exc.strerror or exc})") from exc
        digest = hashlib.sha256(data).hexdigest()
        if not options.overwrite and record.matches(job.rel, digest, weights_sha256, settings):
            return _Prepared(job, digest, None)
        return _Prepared(job, digest, decode_image(data, job.source, options.max_pixels))

    def report(path: Path, status: str) -> None:
        if on_progress is None:
            return
        done = summary.processed + summary.skipped + (len(summary.failed) - len(failures))
        elapsed = time.perf_counter() - started
        per_file = compute_seconds / summary.processed if summary.processed else None
        eta = per_file * (total - done) if per_file is not None else None
        on_progress(ProgressEvent(
            done, total, summary.processed, summary.skipped, len(summary.failed), summary.megapixels,
            summary.megapixels / elapsed if elapsed > 0 else 0.0, eta, str(path), status,
        ))

    def fail(path: Path, reason: str) -> None:
        summary.failed.append({"path": str(path), "reason": reason})
        message(f"failed: {path}: {reason}")
        report(path, "failed")

    def finish_write(prepared: _Prepared, future: Future[list[str]], megapixels: float) -> None:
        job = prepared.job
        try:
            notes = future.result()
        except ImageError as exc:
            fail(job.source, exc.reason)
            return
        for note in notes:
            summary.notes.append(f"{job.source}: {note}")
        summary.processed += 1
        summary.megapixels += megapixels
        report(job.source, "processed")

    def write_and_record(prepared: _Prepared, restored: np.ndarray) -> list[str]:
        # in the writer thread: the record entry follows the rename at once, not the next image
        assert prepared.image is not None
        job = prepared.job
        notes = write_image(job.output, restored, prepared.image)
        try:
            record.update(job.rel, job.source, prepared.input_sha256, weights_sha256, settings)
        except OSError as exc:
            raise ImageError(job.source, f"written, but the record cannot be ({exc.strerror or exc})") from exc
        return notes

    pending: deque[tuple[_Prepared, Future[list[str]], float]] = deque()
    # two workers: one decodes the next image while the other encodes the previous one
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="invrep-io") as pool:
        try:
            upcoming = pool.submit(prepare, jobs[0]) if jobs else None
            for index, job in enumerate(jobs):
                assert upcoming is not None
                current = upcoming
                upcoming = pool.submit(prepare, jobs[index + 1]) if index + 1 < total else None
                try:
                    prepared = current.result()
                except ImageError as exc:
                    fail(job.source, exc.reason)
                    continue
                if prepared.image is None:
                    summary.skipped += 1
                    report(job.source, "skipped")
                    continue
                image = prepared.image
                for note in image.notes:
                    summary.notes.append(f"{job.source}: {note}")
                tick = time.perf_counter()
                try:
                    restored = runner.restore(image, job.source)
                except ImageError as exc:
                    fail(job.source, exc.reason)
                    continue
                except UsageError:
                    raise
                except Exception as exc:  # a backend failure on one image: report it, go on
                    fail(job.source, f"restoration failed ({type(exc).__name__}: {exc})")
                    continue
                compute_seconds += time.perf_counter() - tick
                pending.append((prepared, pool.submit(write_and_record, prepared, restored), image.megapixels))
                del restored, image, prepared
                while pending and (pending[0][1].done() or len(pending) > 1):
                    finish_write(*pending.popleft())
        finally:
            while pending:
                finish_write(*pending.popleft())
            record.save()
    summary.precision = backend.precision  # after any fp32 fallback
    record.write_failures(summary.failed)
    summary.seconds = time.perf_counter() - started
    summary.mp_per_s = summary.megapixels / summary.seconds if summary.seconds > 0 else 0.0
    summary.tile["final_tile"] = runner.tile
    return summary
