"""Names -> weights files: the bundled ``weights/`` folder, a user cache, verified downloads.

A weights spec is one of
- ``None``: the bundled default (``DEFAULT_WEIGHTS``);
- a path to an existing ``.safetensors`` / ``.pt`` / ``.onnx`` file: used as it is;
- a registry name (``invrep_cli/registry.json``, or the JSON file named by ``INVREP_REGISTRY``):
  bundled entries are files in the repository's ``weights/`` folder, the others are downloaded into
  the cache on first use and used offline afterwards;
- an ``http(s)://`` URL, optionally ending in ``#sha256=<hex>``: downloaded into the cache once.

Cache layout (``$INVREP_HOME/weights`` if ``INVREP_HOME`` is set, else the platform's user cache
directory for ``invrep`` plus ``/weights``)::

    weights/<file>                      registry downloads, under the entry's file name
    weights/<file>.sha256               the sha256 verified when it was downloaded
    weights/urls/<url hash>/<basename>  URL downloads (the hash keeps same-named files apart)

A download is verified against the full sha256 once, and the verified digest is written beside the
file. Later runs compare only the size and that record with the registry, so they cost a ``stat``, yet
an entry whose registry digest changed (new weights of the same size) is downloaded afresh.
Nothing here executes code from a weights file; loading is checkpoint.load_restorer's job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from invrep_cli.errors import WeightsError
from invrep_cli.fsutil import sha256_file

HOME_ENV = "INVREP_HOME"
REGISTRY_ENV = "INVREP_REGISTRY"
DEFAULT_WEIGHTS = "lir-unet-mix"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".onnx")
_HEX = re.compile(r"[0-9a-f]+")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a weights spec led. ``source`` is bundled | file | registry | url."""

    path: Path
    source: str
    name: str | None = None
    sha256: str | None = None
    #: True when this call downloaded the file (False: bundled, local or already cached)
    downloaded: bool = False


def package_root() -> Path:
    """The folder holding the ``invrep_cli`` package: the repository root in a source checkout."""
    return Path(__file__).resolve().parents[1]


def is_source_checkout() -> bool:
    """A pip-installed (non-editable) package sits in site-packages, with no pyproject.toml beside it."""
    return (package_root() / "pyproject.toml").is_file()


def bundled_dir() -> Path:
    return package_root() / "weights"


def cache_home() -> Path:
    """invrep's one cache folder: ``$INVREP_HOME`` if set, else the platform's user cache directory
    for ``invrep``. Weights, VGG19 and TensorRT engines each keep a sub-folder of it."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("invrep"))


def cache_dir() -> Path:
    return cache_home() / "weights"


def registry_path() -> Path:
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parent / "registry.json"


def load_registry() -> list[dict[str, Any]]:
    """Read and check the registry; every entry gets name, url, sha256, size, description, file, bundled."""
    path = registry_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot read weights registry {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise WeightsError(f"weights registry {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise WeightsError(f"weights registry {path} must be a JSON list of entries")
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        entry = _check_entry(item, f"{path} entry {i}")
        if entry["name"] in seen:
            raise WeightsError(f"weights registry {path}: name {entry['name']!r} appears twice")
        seen.add(entry["name"])
        entries.append(entry)
    return entries


def _check_entry(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise WeightsError(f"{where}: each entry needs a non-empty 'name'")
    name = item["name"]
    entry = {
        "name": name,
        "url": item.get("url") or "",
        "sha256": (item.get("sha256") or "").lower(),
        "size": item.get("size"),
        "description": item.get("description") or "",
        "file": item.get("file") or "",
        "bundled": bool(item.get("bundled", False)),
    }
    if entry["size"] is not None and (not isinstance(entry["size"], int) or entry["size"] < 0):
        raise WeightsError(f"{where} ({name}): 'size' must be a byte count")
    if entry["sha256"] and not (len(entry["sha256"]) == 64 and _HEX.fullmatch(entry["sha256"])):
        raise WeightsError(f"{where} ({name}): 'sha256' must be 64 hex digits")
    if entry["url"] and not entry["url"].startswith(("http://", "https://")):
        raise WeightsError(f"{where} ({name}): 'url' must be http(s)")
    if not entry["bundled"]:
        if not entry["url"]:
            raise WeightsError(f"{where} ({name}): a non-bundled entry needs a 'url'")
        if not entry["sha256"]:
            # the registry exists to make downloads verifiable: an unverified one is a URL spec's business
            raise WeightsError(f"{where} ({name}): a downloadable entry needs its 'sha256'")
        if not entry["file"]:
            entry["file"] = _url_basename(entry["url"])
    if not entry["file"]:
        raise WeightsError(f"{where} ({name}): a bundled entry needs its 'file'")
    if (not entry["bundled"] and PurePosixPath(entry["file"]).name != entry["file"]) or entry["file"] in (".", ".."):
        # a cache file name from a (possibly third-party) registry must not reach outside the cache
        raise WeightsError(f"{where} ({name}): 'file' must be a plain file name")
    if Path(entry["file"]).suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{where} ({name}): 'file' must end in one of {', '.join(WEIGHT_SUFFIXES)}")
    return entry


def registry_names() -> list[str]:
    return [entry["name"] for entry in load_registry()]


def _url_basename(url: str) -> str:
    return PurePosixPath(unquote(urlsplit(url).path)).name


def _cache_path(entry: dict[str, Any]) -> Path:
    return cache_dir() / Path(entry["file"]).name


def _bundled_path(entry: dict[str, Any]) -> Path:
    file = Path(entry["file"]).expanduser()
    return file if file.is_absolute() else package_root() / file


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_ok(path: Path, sha256: str | None, size: int | None, prefix: bool = False) -> bool:
    """Is ``path`` the verified file? Cheap: size and the digest recorded at download time.

    A file without a record (copied in by hand, or from an older invrep) is hashed once and the
    record written, so the full hash is paid at most once per file.
    """
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    if not sha256:
        return True
    record = _sidecar(path)
    try:
        recorded = record.read_text(encoding="ascii").strip()
    except OSError:
        recorded = ""
    if not recorded:
        recorded = sha256_file(path)
        _write_sidecar(path, recorded)
    return recorded.startswith(sha256) if prefix else recorded == sha256


def _write_sidecar(path: Path, digest: str) -> None:
    try:
        _sidecar(path).write_text(digest + "\n", encoding="ascii")
    except OSError:
        # a read-only cache still works; the file is only hashed again next time
        pass


def _download(
    url: str, dest: Path, sha256: str | None, prefix: str | None, size: int | None, progress: Progress | None
) -> None:
    from invrep_cli.download import download_file

    _sidecar(dest).unlink(missing_ok=True)
    download_file(url, dest, sha256=sha256, sha256_prefix=prefix, progress=progress, expected_size=size)
    # download_file verified the full digest when given one; a prefix only is completed here
    _write_sidecar(dest, sha256 if sha256 else sha256_file(dest))


def _resolve_entry(entry: dict[str, Any], progress: Progress | None, offline: bool, force: bool) -> ResolvedWeights:
    name, sha = entry["name"], entry["sha256"] or None
    if entry["bundled"]:
        path = _bundled_path(entry)
        if path.is_file():
            # the bundled file is small and read once per run: a full check is cheap and catches a
            # registry digest that was not updated after retraining
            if sha and (got := sha256_file(path)) != sha:
                raise WeightsError(
                    f"bundled weights {name!r} at {path} do not match the registry: expected sha256 {sha}, "
                    f"got {got} (corrupt file, or a registry entry not updated after retraining)"
                )
            return ResolvedWeights(path, "bundled", name, sha)

    cached = _cache_path(entry)
    if force and not entry["bundled"]:
        cached.unlink(missing_ok=True)
    if _cached_ok(cached, sha, entry["size"]):
        return ResolvedWeights(cached, "registry", name, sha)
    if entry["url"] and not offline:
        _download(entry["url"], cached, sha, None, entry["size"], progress)
        return ResolvedWeights(cached, "registry", name, sha, downloaded=True)

    if entry["bundled"]:
        where = f"{_bundled_path(entry)} or {cached}"
        if is_source_checkout():
            hint = "the weights/ folder of this checkout lacks it (train and export it, or pass --weights)"
        else:
            hint = (
                "bundled weights ship only with a source checkout, not with a pip-installed package; "
                f"copy the file to {cached} or pass --weights with a path, URL or registry name"
            )
        if entry["url"]:
            hint += "; it can be downloaded when not offline"
        raise WeightsError(f"bundled weights {name!r} not found (looked in {where}): {hint}")
    raise WeightsError(
        f"weights {name!r} are not cached ({cached}) and offline use was asked for; "
        f"run `invrep weights download {name}` while online"
    )


def _resolve_url(url: str, progress: Progress | None, offline: bool, force: bool) -> ResolvedWeights:
    parts = urlsplit(url)
    digest = ""
    if parts.fragment:
        digest = (parse_qs(parts.fragment).get("sha256") or [""])[0].lower()
        if not (8 <= len(digest) <= 64 and _HEX.fullmatch(digest)):
            raise WeightsError(f"{url}: the #sha256= fragment must be 8 to 64 hex digits")
    plain = urlunsplit(parts._replace(fragment=""))
    basename = _url_basename(plain)
    if Path(basename).suffix not in WEIGHT_SUFFIXES or basename in (".", ".."):
        raise WeightsError(f"{url}: a weights URL must end in a file name ending in {', '.join(WEIGHT_SUFFIXES)}")
    dest = cache_dir() / "urls" / hashlib.sha256(plain.encode()).hexdigest()[:16] / basename
    full, prefix = (digest, None) if len(digest) == 64 else (None, digest or None)
    if force:
        dest.unlink(missing_ok=True)
    if _cached_ok(dest, digest or None, None, prefix=prefix is not None):
        return ResolvedWeights(dest, "url", basename, full)
    if offline:
        raise WeightsError(f"{url} is not cached ({dest}) and offline use was asked for")
    _download(plain, dest, full, prefix, None, progress)
    return ResolvedWeights(dest, "url", basename, full, downloaded=True)


def locate_weights(
    spec: str | os.PathLike[str] | None, progress: Progress | None = None, offline: bool = False, force: bool = False
) -> ResolvedWeights:
    """Resolve a weights spec (see the module docstring), downloading if needed; ``force`` re-downloads."""
    if spec is None:
        default = _default_entry(load_registry())
        if default is None:
            raise WeightsError(f"no default weights: registry {registry_path()} has no bundled entry; pass --weights")
        return _resolve_entry(default, progress, offline, force)

    text = os.fspath(spec)
    if text.startswith(("http://", "https://")):
        return _resolve_url(text, progress, offline, force)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
        return ResolvedWeights(path, "file")
    entries = load_registry()
    for entry in entries:
        if entry["name"] == text:
            return _resolve_entry(entry, progress, offline, force)
    if path.is_file():
        raise WeightsError(f"{path}: not a weights file (expected {', '.join(WEIGHT_SUFFIXES)})")
    if path.suffix in WEIGHT_SUFFIXES or "/" in text or os.sep in text:
        raise WeightsError(f"weights file not found: {path}")
    names = ", ".join(e["name"] for e in entries) or "none"
    raise WeightsError(
        f"unknown weights {text!r}: not a file, an http(s) URL or a registry name (registered: {names}; "
        "see `invrep weights list`)"
    )


def _default_entry(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry used without --weights: DEFAULT_WEIGHTS if registered, else the first bundled one."""
    default = next((e for e in entries if e["name"] == DEFAULT_WEIGHTS), None)
    return default or next((e for e in entries if e["bundled"]), None)


def resolve_weights(spec: str | None, progress: Progress | None = None, offline: bool = False) -> Path:
    """The weights file for ``spec``: bundled default, path, registry name or URL (see module docstring)."""
    return locate_weights(spec, progress=progress, offline=offline).path


def list_weights() -> list[dict[str, Any]]:
    """Registry entries with where each file is (or would be) and whether it is present.

    ``cached`` means usable without the network: a bundled file present, or a download in the cache
    of the registered size (the digest is checked when it is used). ``default`` marks the entry used
    when no --weights is given.
    """
    rows = []
    entries = load_registry()
    default = _default_entry(entries)
    for entry in entries:
        path = _cache_path(entry)
        if entry["bundled"] and (_bundled_path(entry).is_file() or not path.is_file()):
            path = _bundled_path(entry)
        present = path.is_file() and (entry["size"] is None or path.stat().st_size == entry["size"])
        size = entry["size"] if entry["size"] is not None else (path.stat().st_size if path.is_file() else None)
        rows.append(
            {
                "name": entry["name"],
                "description": entry["description"],
                "default": entry is default,
                "size": size,
                "cached": present,
                "bundled": entry["bundled"],
                "path": str(path),
                "url": entry["url"],
                "sha256": entry["sha256"],
            }
        )
    return rows
