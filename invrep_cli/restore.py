"""Restoration: one image -> restored image (tiles through a Backend), and resumable folder runs.

One entry point: the caller builds a validated ``RestoreConfig``; ``plan_restore`` turns it into a
``RestorePlan`` (the backend, the tile choice, this shard's jobs, the record, the weights digest)
that the caller may print; ``run_restore`` runs it. ``invrep restore``, ``invrep demo`` and
``invrep bench`` all go through ``plan_restore``.

Folder runs behave like a build tool:
- IN is a file, a folder (recursive; sub-folders are kept under OUT) or a glob; every entry that
  is not processed is listed as ``ignored`` or ``failed`` with a reason (``inputs``);
- each output folder keeps a record (``record``): an output is skipped only when the sha256 of its
  input, the sha256 of the weights and the settings that change pixels (backend, precision,
  requested tile, overlap, context margin, format) match and the file is still there with its
  size; missing, changed or foreign outputs are (re)written. A killed batch resumes by re-running
  the same command; ``overwrite`` re-processes everything;
- outputs are written atomically (temporary file, fsync, rename, fsync of the folder): never
  half-written, with the permissions a plain write gives; each is recorded (an fsynced journal
  line) right after its rename, so ``kill -9`` at any moment loses at most the image in flight,
  and the next run removes the temporaries such a kill leaves beside its own outputs;
- OUT is tried before the first image (``fsutil.writable_problem``: a probe file, since permission
  bits say nothing about a read-only mount and root ignores them); refused with exit 2;
- a file that cannot be read, decoded or written is one failure naming the file and the reason;
  the batch goes on, and failures are listed in the summary and in ``OUT/.invrep-failures.txt``
  (``summary.failures_file``); a record or failures list that cannot be written any more (disk
  full) is a note or a message, never a traceback, and the journal keeps what was written;
- every batch a backend returns is checked (``check_output``): NaN/inf or values far outside
  [0, 1] fail that image rather than being written as black or white;
- ``strength`` blends the model's correction linearly (``restore_pixels``); ``self_ensemble`` averages
  the restorer over 2, 4 or 8 orientations of each tile (``ensemble.py``);
- Ctrl-C (KeyboardInterrupt) stops the run: writes already handed over finish and are recorded,
  the summary says what was not written (``interrupted``, ``not_done``), and the CLI prints the
  command that continues;
- shards (``--shard K/N`` or torchrun's RANK/WORLD_SIZE) take ``files[K::N]`` of the sorted list
  and keep their own record and failure files (``.invrep-restore.KofN.json``), so ranks never
  write the same file; every rank reads all records;
- decoding the next image and encoding the previous one run in worker threads while the current
  one is restored.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from invrep_cli import __version__
from invrep_cli.backends import BACKEND_CHOICES, PRECISION_CHOICES, Backend, is_out_of_memory, make_backend
from invrep_cli.ensemble import ORIENTATIONS
from invrep_cli.ensemble import self_ensemble as self_ensemble_of
from invrep_cli.errors import ImageError, InvrepError, UsageError
from invrep_cli.fsutil import remove_leftovers, sha256_bytes, writable_problem
from invrep_cli.imageio import FORMAT_CHOICES, LoadedImage, decode_image, write_image
from invrep_cli.inputs import FileJob, JobPlan, device_for_rank, plan_jobs, shard_from_env
from invrep_cli.record import RestoreRecord
from invrep_cli.tiling import plan_tiles, round_down, round_up, tiled_apply
from invrep_cli.weights import resolve_weights

#: smallest tile an out-of-memory retry goes down to
MIN_TILE = 32
#: smallest ``--tile`` accepted: below it a tile spends most of its time on its context margin
#: (``--tile 3`` ran ~100x slower than the default). Larger margins raise it (``min_tile``).
MIN_REQUESTED_TILE = 64
#: largest automatic tile: beyond this, bigger tiles gain little and cost latency. On CPU 512 keeps
#: a 6000x4000 photo under 2 GB peak (benchmarks/peak_memory.py: 1.79 GB at 512, 2.66 GB at 1024)
#: and is on the speed plateau (benchmarks/tile_speed.py, 2 cores, the default weights: MP/s at 384
#: and 512 within 4 % for fp32, bf16 and int8; 256 loses up to 19 % and 128 41-51 % to the context
#: margin it recomputes)
MAX_AUTO_TILE = {"cuda": 2048, "cpu": 512}
#: share of free memory an automatic tile plan may use
MEMORY_SHARE = {"cuda": 0.6, "cpu": 0.4}
#: --strength bounds: 0 leaves the input as it is; 4x the model's correction is already far past
#: anything a blind model was trained to give (above it, mostly clipping)
MAX_STRENGTH = 4.0
#: backend output beyond [0, 1] by more than this is broken (damaged weights, a bad graph), not
#: rounding: the restorer clamps its own output, so a healthy backend stays within ~1e-3 of the range
OUTPUT_RANGE_SLACK = 0.5

Message = Callable[[str], None]


@dataclass(frozen=True)
class RestoreConfig:
    """What a restore was asked to do; built by the CLI (or bench), checked on construction
    (``UsageError``, exit 2, before anything is loaded or written)."""

    #: IN: an image, a folder (recursive) or a glob; None for in-memory use (bench)
    input: str | None = None
    #: OUT: a folder, or an image file name when IN is one file
    out: str | None = None
    #: registry name, .safetensors/.pt/.onnx path or URL; None = the bundled default
    weights: str | None = None
    #: torch | onnx; None = ONNX Runtime for an .onnx file, PyTorch otherwise
    backend: str | None = None
    #: auto | cuda | cuda:N | cpu
    device: str = "auto"
    #: auto | fp32 | fp16 | bf16 (what the backend supports)
    precision: str = "auto"
    #: core tile size in px; None = chosen from free memory; 0 = whole image in one piece
    tile: int | None = None
    #: px over which neighbouring tiles are blended
    tile_overlap: int = 16
    #: keep | png | jpg | tif | webp
    fmt: str = "keep"
    #: re-process every file even when its record matches
    overwrite: bool = False
    #: (index, count), 0-based: this process takes files[index::count]; None = torchrun's env
    shard: tuple[int, int] | None = None
    #: CPU threads for inference; None = the library default
    threads: int | None = None
    #: torch.compile the restorer (torch backend only)
    compile: bool = False
    #: tiles per batch; None = from free memory on CUDA, 1 on CPU
    batch_size: int | None = None
    #: images larger than this many pixels are refused (decompression bombs); None = imageio.MAX_PIXELS
    max_pixels: int | None = None
    #: output = input + strength * (restored - input), clipped: 0 = the input, 1 = the model as it is
    strength: float = 1.0
    #: average the restorer over this many flips and quarter turns of each tile (ensemble.py: 1 = off,
    #: 2, 4 or 8), for as many times the time
    self_ensemble: int = 1

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKEND_CHOICES:
            raise UsageError(f"--backend {self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.precision not in PRECISION_CHOICES:
            raise UsageError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISION_CHOICES)}")
        if self.fmt not in FORMAT_CHOICES:
            raise UsageError(f"--format {self.fmt!r}: choose one of {', '.join(FORMAT_CHOICES)}")
        if self.tile is not None and self.tile < 0:
            raise UsageError(f"--tile {self.tile}: must be >= 0 (0 = whole image)")
        if self.tile and self.tile < MIN_REQUESTED_TILE:
            raise UsageError(
                f"--tile {self.tile}: tiles under {MIN_REQUESTED_TILE} px spend most of their time on the context "
                f"around them; use --tile {MIN_REQUESTED_TILE} or more, 0 for the whole image, or leave it out"
            )
        if self.tile_overlap < 0:
            raise UsageError(f"--tile-overlap {self.tile_overlap}: must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads}: must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size {self.batch_size}: must be >= 1")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UsageError(f"--max-megapixels: must be positive (got {self.max_pixels} pixels)")
        if self.shard is not None and not (self.shard[1] >= 1 and 0 <= self.shard[0] < self.shard[1]):
            raise UsageError(f"--shard {self.shard[0]}/{self.shard[1]}: need N >= 1 and 0 <= K < N")
        if (self.input is None) != (self.out is None):
            raise UsageError("IN and OUT go together")
        if self.compile and self.backend == "onnx":
            raise UsageError("--compile applies to the torch backend only")
        if not 0.0 <= self.strength <= MAX_STRENGTH:  # NaN fails this too
            raise UsageError(
                f"--strength {self.strength:g}: must be between 0 (the input unchanged) and {MAX_STRENGTH:g}; "
                "1 is the model as trained"
            )
        if self.self_ensemble not in ORIENTATIONS:
            raise UsageError(
                f"--self-ensemble {self.self_ensemble}: choose {', '.join(map(str, ORIENTATIONS))} "
                "(orientations averaged; 1 = off)"
            )


@dataclass(frozen=True)
class TileChoice:
    tile: int
    batch_size: int
    #: why this tile, for the log (e.g. "from 61.2 GiB free on cuda")
    reason: str

    def describe(self, margin: int, overlap: int) -> str:
        size = "whole image" if self.tile == 0 else f"tile {self.tile} px"
        return f"{size}, overlap {overlap}, context {margin} px, {self.batch_size} per batch ({self.reason})"

    def describe_short(self, margin: int, overlap: int) -> str:
        """The same without the reason: what fits one 80-column line beside the pixel limit."""
        size = "whole image" if self.tile == 0 else f"tile {self.tile} px"
        return f"{size}, overlap {overlap}, context {margin} px, {self.batch_size}/batch"


@dataclass
class RestorePlan:
    """Everything decided before the first pixel: what runs, how, on which files."""

    config: RestoreConfig
    backend: Backend
    #: the weights file (None when the caller brought its own backend)
    weights_path: Path | None
    weights_sha256: str
    tile: TileChoice
    #: this process's shard, from the config or torchrun's environment
    shard: tuple[int, int] | None
    #: this shard's jobs, failures and ignored entries (None without IN and OUT)
    work: JobPlan | None
    record: RestoreRecord | None

    def settings(self) -> dict[str, Any]:
        """The settings that change output pixels: a change of any re-processes an output.

        ``strength`` is recorded only when it is not 1, and ``self_ensemble`` only when above 1, so
        records written before either option existed still match."""
        settings: dict[str, Any] = {
            "backend": self.backend.name,
            "precision": self.backend.precision_policy,
            "tile": "auto" if self.config.tile is None else self.config.tile,
            "overlap": self.config.tile_overlap,
            "margin": self.backend.context_margin,
            "format": self.config.fmt,
        }
        if self.config.strength != 1.0:
            settings["strength"] = self.config.strength
        if self.config.self_ensemble > 1:
            settings["self_ensemble"] = self.config.self_ensemble
        return settings

    def provenance(self) -> str:
        """What made the output pixels, for the EXIF Software tag of every output: the program, the
        weights (file name and digest prefix), the backend and precision, the strength, and the
        self-ensemble when it ran."""
        weights = self.weights_path.name if self.weights_path else "weights"
        ensemble = f", self-ensemble x{self.config.self_ensemble}" if self.config.self_ensemble > 1 else ""
        return (
            f"invrep {__version__}: {weights} (sha256 {self.weights_sha256[:12]}), {self.backend.name} "
            f"{self.backend.precision_policy}, strength {self.config.strength:g}{ensemble}"
        )

    def describe_tiles(self) -> str:
        return self.tile.describe(self.backend.context_margin, self.config.tile_overlap)


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
    #: entries a folder scan passed over on purpose, each with its reason
    ignored: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0
    mp_per_s: float = 0.0
    device: str = ""
    backend: str = ""
    precision: str = ""
    tile: dict[str, Any] = field(default_factory=dict)
    out: str = ""
    shard: str | None = None
    weights: str | None = None
    weights_sha256: str = ""
    strength: float = 1.0
    self_ensemble: int = 1
    notes: list[str] = field(default_factory=list)
    #: where this run's failures are listed (None when there were none, or it could not be written)
    failures_file: str | None = None
    #: stopped by Ctrl-C: the jobs neither written, skipped nor failed are counted in ``not_done``
    interrupted: bool = False
    not_done: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- one image


class UnusableOutput(InvrepError):
    """The backend returned NaN/inf or values far outside [0, 1]: the image must not be written."""


def check_output(batch: np.ndarray) -> None:
    """Raise ``UnusableOutput`` when a backend's batch is not an image: NaN/inf, or values more
    than ``OUTPUT_RANGE_SLACK`` outside [0, 1] (clipping would hide either as black or white)."""
    finite = np.isfinite(batch)
    if not finite.all():
        share = 1.0 - float(finite.mean())
        raise UnusableOutput(f"the model's output has NaN/inf values ({share:.1%} of them)")
    low, high = float(batch.min()), float(batch.max())
    if low < -OUTPUT_RANGE_SLACK or high > 1.0 + OUTPUT_RANGE_SLACK:
        raise UnusableOutput(f"the model's output spans {low:.3g} to {high:.3g}, far outside the valid range 0 to 1")


def restore_pixels(
    pixels: np.ndarray, backend: Backend, tile: int = 0, overlap: int = 16, batch_size: int = 1,
    out_dtype: type | None = None, strength: float = 1.0, self_ensemble: int = 1,
) -> np.ndarray:
    """H x W x C pixels (float32 in [0, 1], or uint8/uint16 samples) -> restored, same shape,
    through tiles; float32 in [0, 1], or ``out_dtype`` (uint8/uint16) quantised tile row by tile row.

    Gray goes through the restorer's own 1-channel path where the backend has one; other backends
    get it replicated to RGB and averaged back. Every batch the backend returns is checked
    (``check_output``: ``UnusableOutput`` rather than a black or white image).

    ``strength`` S blends the model's correction linearly, tile by tile: input + S * (restored -
    input), clipped to [0, 1]. Blending the tiles is linear too, so this equals doing it on the
    whole image; S = 0 returns the input exactly (after quantisation), S = 1 skips the blend.
    ``self_ensemble`` N > 1 runs each tile batch in N orientations and averages (ensemble.py).
    """
    h, w, channels = pixels.shape
    plan = plan_tiles(h, w, tile, overlap, backend.context_margin, backend.size_multiple)
    # a conditioned restorer is told the whole image's level in every tile, so tiles agree
    level = None
    if backend.level_input:
        from invrep_cli.level import image_level  # torch: only a torch backend is ever conditioned

        level = image_level(pixels)
    run_backend = backend.run if level is None else functools.partial(backend.run, level=level)
    if channels == 1 and not backend.accepts_gray:

        def model(batch: np.ndarray) -> np.ndarray:
            return run_backend(np.repeat(batch, 3, axis=1)).mean(axis=1, keepdims=True)

    else:
        model = run_backend

    def run(batch: np.ndarray) -> np.ndarray:
        restored = self_ensemble_of(model, batch, self_ensemble) if self_ensemble > 1 else model(batch)
        check_output(restored)
        if strength == 1.0:
            return restored
        blended = batch + np.float32(strength) * (restored - batch)
        return np.clip(blended, 0.0, 1.0, out=blended)

    return tiled_apply(pixels, run, plan, batch_size, out_dtype=out_dtype)


def restore_image(
    image: LoadedImage, backend: Backend, tile: int = 0, overlap: int = 16, batch_size: int = 1,
    strength: float = 1.0, self_ensemble: int = 1,
) -> np.ndarray:
    """A decoded image's colour, restored into the bit depth it will be written at (alpha and
    metadata stay in ``image`` for the writer). The backend picks its precision for that depth
    first (bf16 is not kept for 16-bit outputs when it was chosen automatically)."""
    backend.select_bit_depth(image.bit_depth)
    return restore_pixels(
        image.samples, backend, tile, overlap, batch_size, out_dtype=image.samples.dtype.type, strength=strength,
        self_ensemble=self_ensemble,
    )


def choose_tile(
    backend: Backend, overlap: int = 16, tile: int | None = None, batch_size: int | None = None
) -> TileChoice:
    """The tile plan: ``tile`` as given (0 = whole image) or the largest that fits in free memory.

    Memory per input pixel is measured on CUDA (``bytes_per_pixel`` of the torch backend) or
    estimated; the tile's input is its core plus overlap plus twice the context margin. On CUDA
    several tiles run per batch.
    """
    free = backend.free_memory()
    kind = "cuda" if any(name in backend.device.lower() for name in ("cuda", "tensorrt")) else "cpu"
    bpp = backend.bytes_per_pixel()
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
    core = max(min_tile(backend), min(core, MAX_AUTO_TILE[kind]))
    return TileChoice(core, wanted_batch, f"from {gib}, ~{bpp / 1024:.1f} KiB per pixel")


def _batch_for(budget: float, bpp: float, side: int) -> int:
    return int(max(1, min(8, budget // (bpp * side * side))))


def min_tile(backend: Backend) -> int:
    """Smallest tile worth running: ``MIN_REQUESTED_TILE``, or the context margin (aligned to the
    size multiple) where that is larger, so a tile's core is never smaller than its context."""
    return max(MIN_REQUESTED_TILE, round_up(backend.context_margin, backend.size_multiple))


# --------------------------------------------------------------------------- planning


def _weights_backend_name(config: RestoreConfig, weights_path: Path) -> str:
    """--backend as given, else ONNX Runtime for an .onnx file; refuses a mismatch with a next step."""
    is_onnx = weights_path.suffix.lower() == ".onnx"
    name = config.backend or ("onnx" if is_onnx else "torch")
    if name == "onnx" and not is_onnx:
        onnx_name = weights_path.with_suffix(".onnx").name
        raise UsageError(
            f"--backend onnx runs an ONNX graph, and {weights_path.name} holds PyTorch weights: export it first "
            f"(invrep export --weights {weights_path} --onnx {onnx_name}), then pass --weights {onnx_name}"
        )
    if config.compile and name != "torch":
        raise UsageError("--compile applies to the torch backend only")
    return name


def plan_restore(
    config: RestoreConfig, backend: Backend | None = None, on_warning: Message | None = None
) -> RestorePlan:
    """Decide everything before the first pixel; raises UsageError (exit 2) before anything is
    written. Path errors come before the weights load. ``backend`` replaces the one the config
    names (tests, embedding); ``on_warning`` receives the backend's one-line warnings."""
    shard = config.shard or shard_from_env()
    work = plan_jobs(config.input, config.out, config.fmt).shard(shard) if config.input is not None else None
    weights_path: Path | None = None
    if backend is None:
        weights_path = resolve_weights(config.weights)
        name = _weights_backend_name(config, weights_path)
        backend = make_backend(
            weights_path, name, device_for_rank(config.device), config.precision, config.threads, config.compile
        )
    if on_warning is not None:
        backend.on_warning = on_warning
    if config.tile and config.tile < min_tile(backend):
        raise UsageError(
            f"--tile {config.tile}: these weights need {backend.context_margin} px of context around each tile; "
            f"use --tile {min_tile(backend)} or more, or 0 for the whole image"
        )
    choice = choose_tile(backend, config.tile_overlap, config.tile, config.batch_size)
    record = RestoreRecord(work.record_dir, shard) if work is not None else None
    if work is not None and (problem := writable_problem(work.record_dir)):
        # last, so nothing else can still refuse the run; before the first image is read
        raise UsageError(f"OUT ({config.out}) cannot be written: {problem}; nothing was restored")
    return RestorePlan(config, backend, weights_path, backend.weights_sha256, choice, shard, work, record)


# --------------------------------------------------------------------------- folder runs


class _Runner:
    """State of one run: the current tile (shrinks for good after an out-of-memory retry)."""

    def __init__(
        self, backend: Backend, choice: TileChoice, overlap: int, message: Message, strength: float = 1.0,
        self_ensemble: int = 1,
    ) -> None:
        self.backend = backend
        self.tile = choice.tile
        self.batch_size = choice.batch_size
        self.overlap = overlap
        self.message = message
        self.strength = strength
        self.self_ensemble = self_ensemble

    def restore(self, image: LoadedImage, source: Path) -> np.ndarray:
        while True:
            try:
                return restore_image(
                    image, self.backend, self.tile, self.overlap, self.batch_size, self.strength, self.self_ensemble
                )
            except UnusableOutput as exc:
                raise ImageError(source, f"{exc}; not written (damaged weights, or a broken backend?)") from exc
            except InvrepError:
                raise
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self.backend.release_memory()
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


def run_restore(
    plan: RestorePlan,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    on_message: Message | None = None,
) -> RestoreSummary:
    """Run a plan's jobs (see the module docstring for skip, record and failure semantics).

    Per-file problems end up in ``failed``; the batch goes on.
    """
    if plan.work is None or plan.record is None:
        raise UsageError("this restore plan has no IN and OUT to run")
    config, backend, record, work = plan.config, plan.backend, plan.record, plan.work
    message: Message = on_message or (lambda _text: None)
    started = time.perf_counter()
    jobs, failures = work.jobs, work.failed
    settings = plan.settings()
    provenance = plan.provenance()
    weights_sha256 = plan.weights_sha256
    # temporaries a killed run left beside this shard's own outputs and records (never another's)
    remove_leftovers([job.output for job in jobs] + [record.path, record.failures_path])
    runner = _Runner(backend, plan.tile, config.tile_overlap, message, config.strength, config.self_ensemble)
    summary = RestoreSummary(
        failed=list(failures), ignored=list(work.ignored), device=backend.device, backend=backend.name,
        out=str(work.record_dir), shard=f"{plan.shard[0]}/{plan.shard[1]}" if plan.shard else None,
        tile={"tile": plan.tile.tile, "overlap": config.tile_overlap, "margin": backend.context_margin,
              "batch_size": plan.tile.batch_size, "reason": plan.tile.reason},
        weights=str(plan.weights_path) if plan.weights_path else None, weights_sha256=weights_sha256,
        strength=config.strength, self_ensemble=config.self_ensemble,
    )
    summary.notes.extend(backend.notes)
    for failure in failures:
        message(f"failed: {failure['path']}: {failure['reason']}")
    total = len(jobs)
    compute_seconds = 0.0

    def prepare(job: FileJob) -> _Prepared:
        try:
            data = job.source.read_bytes()
        except OSError as exc:
            raise ImageError(job.source, f"cannot read file ({exc.strerror or exc})") from exc
        digest = sha256_bytes(data)
        if not config.overwrite and record.matches(job.rel, digest, weights_sha256, settings):
            return _Prepared(job, digest, None)
        return _Prepared(job, digest, decode_image(data, job.source, config.max_pixels))

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
        except Exception as exc:  # anything else the writer hit is still this one image's failure
            fail(job.source, f"cannot write output ({type(exc).__name__}: {exc})")
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
        notes = write_image(job.output, restored, prepared.image, software=provenance)
        try:
            record.update(job.rel, job.source, prepared.input_sha256, weights_sha256, settings)
        except OSError as exc:
            raise ImageError(job.source, f"written, but the record cannot be ({exc.strerror or exc})") from exc
        return notes

    pending: deque[tuple[_Prepared, Future[list[str]], float]] = deque()
    # two workers: one decodes the next image while the other encodes the previous one
    upcoming: Future[_Prepared] | None = None
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
                    finish_write(*pending[0])  # popped after: a Ctrl-C inside leaves it for the finally
                    pending.popleft()
        except KeyboardInterrupt:
            # Ctrl-C: the image being restored is dropped; the writes already handed over finish
            # (below) and are recorded, so the same command continues where this stopped
            summary.interrupted = True
            if upcoming is not None:
                upcoming.cancel()
        finally:
            while pending:
                finish_write(*pending.popleft())
            try:
                record.save()
            except OSError as exc:  # the journal stays: the next run replays it, nothing is lost
                summary.notes.append(
                    f"{record.path}: cannot be updated ({exc.strerror or exc}); its journal "
                    f"{record.journal_path.name} keeps what was written"
                )
    summary.precision = backend.precision_policy  # after any fp32 fallback
    if summary.interrupted:
        summary.not_done = total - summary.processed - summary.skipped - (len(summary.failed) - len(failures))
    try:
        record.write_failures(summary.failed)
        summary.failures_file = str(record.failures_path) if summary.failed else None
    except OSError as exc:
        message(f"the list of failures cannot be written to {record.failures_path} ({exc.strerror or exc})")
    summary.seconds = time.perf_counter() - started
    summary.mp_per_s = summary.megapixels / summary.seconds if summary.seconds > 0 else 0.0
    summary.tile["final_tile"] = runner.tile
    return summary
