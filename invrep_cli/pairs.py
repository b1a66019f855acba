"""Noisy/reference pairs for ``invrep bench --pairs``: files matched by name pattern, and the two
noise levels a classical denoiser can be given for real noise.

A pattern holds exactly one ``*`` and is matched against paths relative to the folder (so
``noisy/*.png`` with ``gt/*.png`` works as well as CC15's ``*_real.png`` with ``*_mean.png``); what
the ``*`` stands for names the pair: ``d800_iso1600_1_real.png`` and ``d800_iso1600_1_mean.png``
are the pair ``d800_iso1600_1``. A file that only one side has is an error naming it, not a pair
quietly left out: a benchmark over fewer pairs than the folder holds is not the benchmark asked for.

Levels, on the 0-255 scale:
- ``estimated_sigma``: from the noisy image alone, by ``noise.estimate_sigma``, the estimator stage 1
  of training fits its noise model with. This is what a user has.
- ``oracle_sigma``: std(noisy - reference). A user never has the reference, so a classical method
  given this level is an upper bound on what it would do in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invrep_cli.errors import DataError, UsageError
from invrep_cli.imageio import image_files
from invrep_cli.synthetic import MIN_SIDE, read_uint8

#: CC15's naming (Nam et al. 2016): ``<camera>_<iso>_<n>_real.png`` noisy, ``..._mean.png`` reference
NOISY_PATTERN = "*_real.png"
REF_PATTERN = "*_mean.png"
#: how many unmatched files an error names before it counts the rest
_NAMED = 10


@dataclass(frozen=True)
class PairFiles:
    """One pair as files: ``name`` is what the pattern's ``*`` matched."""

    name: str
    noisy: Path
    reference: Path


@dataclass
class Pair:
    """One pair read as uint8 arrays of the same shape, with both noise levels (0-255)."""

    files: PairFiles
    noisy: np.ndarray
    reference: np.ndarray
    sigma_estimated: float
    sigma_oracle: float


def _split_pattern(pattern: str, option: str) -> tuple[str, str]:
    if pattern.count("*") != 1 or any(c in pattern for c in "?[]"):
        raise UsageError(f"{option} {pattern!r}: give exactly one '*' (the part that names a pair) and no other "
                         "wildcards, e.g. '*_real.png'")
    prefix, suffix = pattern.split("*")
    return prefix, suffix


def _names(text: list[str]) -> str:
    shown = ", ".join(text[:_NAMED])
    return shown + (f" and {len(text) - _NAMED} more" if len(text) > _NAMED else "")


def match_pairs(folder: str | os.PathLike[str], noisy_pattern: str = NOISY_PATTERN,
                ref_pattern: str = REF_PATTERN) -> list[PairFiles]:
    """Pairs in ``folder`` (recursive), sorted by name. Raises DataError (exit 2) when there are
    none, when a file matches both patterns, or when a noisy file or a reference lacks its twin."""
    sides = {"noisy": _split_pattern(noisy_pattern, "--noisy-pattern"),
             "reference": _split_pattern(ref_pattern, "--ref-pattern")}
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"pairs folder not found: {root}")
    found: dict[str, dict[str, Path]] = {"noisy": {}, "reference": {}}
    both: list[str] = []
    for path in image_files(root):
        rel = path.relative_to(root).as_posix()
        hits = [side for side, (pre, suf) in sides.items()
                if len(rel) >= len(pre) + len(suf) and rel.startswith(pre) and rel.endswith(suf)]
        if len(hits) == 2:
            both.append(rel)
        for side in hits:
            pre, suf = sides[side]
            found[side][rel[len(pre): len(rel) - len(suf)]] = path
    if both:
        raise DataError(f"{root}: {_names(both)} match both --noisy-pattern {noisy_pattern!r} and --ref-pattern "
                        f"{ref_pattern!r}; make the patterns tell noisy files from references")
    noisy, refs = found["noisy"], found["reference"]
    if not noisy or not refs:
        missing = [f"no file matches {opt} {pat!r}" for opt, pat, hits in
                   (("--noisy-pattern", noisy_pattern, noisy), ("--ref-pattern", ref_pattern, refs)) if not hits]
        raise DataError(f"no noisy/reference pairs in {root}: " + "; ".join(missing))
    lonely = [f"{noisy[k].relative_to(root).as_posix()} (no reference)" for k in sorted(noisy.keys() - refs.keys())]
    lonely += [f"{refs[k].relative_to(root).as_posix()} (no noisy file)" for k in sorted(refs.keys() - noisy.keys())]
    if lonely:
        raise DataError(f"{root}: unmatched files with --noisy-pattern {noisy_pattern!r} and --ref-pattern "
                        f"{ref_pattern!r}: {_names(lonely)}")
    return [PairFiles(k, noisy[k], refs[k]) for k in sorted(noisy)]


def estimated_sigma(noisy: np.ndarray) -> float:
    """Noise std (0-255) of a uint8 image from the image alone, by the estimator stage 1 uses."""
    from invrep_cli.noise import estimate_sigma

    return 255.0 * estimate_sigma(noisy.astype(np.float32) / 255.0)


def oracle_sigma(noisy: np.ndarray, reference: np.ndarray) -> float:
    """std(noisy - reference) on the 0-255 scale: the level a user without the reference never has."""
    return float(np.std(noisy.astype(np.float64) - reference.astype(np.float64)))


def load_pairs(folder: str | os.PathLike[str], noisy_pattern: str = NOISY_PATTERN, ref_pattern: str = REF_PATTERN,
               limit: int | None = None, gray: bool = False) -> tuple[list[Pair], list[str]]:
    """The first ``limit`` pairs (by name) read as uint8, with both levels, and notes about pairs left
    out because a file cannot be read or is smaller than SSIM's window. Two files of one pair with
    different sizes are a DataError: the patterns pair the wrong files."""
    from PIL import UnidentifiedImageError

    pairs: list[Pair] = []
    notes: list[str] = []
    for files in match_pairs(folder, noisy_pattern, ref_pattern):
        if limit is not None and len(pairs) >= limit:
            break
        try:
            noisy, reference = read_uint8(files.noisy, gray), read_uint8(files.reference, gray)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            notes.append(f"{files.name}: pair left out, cannot be read ({exc})")
            continue
        if noisy.shape != reference.shape:
            raise DataError(f"pair {files.name}: {files.noisy} is {noisy.shape} but {files.reference} is "
                            f"{reference.shape}")
        if min(noisy.shape[:2]) < MIN_SIDE:
            notes.append(f"{files.name}: pair left out, smaller than {MIN_SIDE} pixels a side (SSIM window)")
            continue
        pairs.append(Pair(files, noisy, reference, estimated_sigma(noisy), oracle_sigma(noisy, reference)))
    if not pairs:
        raise DataError(f"no usable pairs in {folder}: " + "; ".join(notes))
    return pairs, notes
