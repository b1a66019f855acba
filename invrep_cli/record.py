"""The record of a folder run: what produced each output, so re-running resumes.

Each output folder keeps ``.invrep-restore[.KofN].json``, keyed by the output's path relative to
the folder: the sha256 of the input bytes, the sha256 of the weights, the settings that change
pixels and the output's size. An output is skipped only when its entry matches and the file is
still there with that size. Shards keep their own files (``KofN``) and read everyone's.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from invrep_cli.fsutil import atomic_path, fsync_dir

RECORD_NAME = ".invrep-restore"
FAILURES_NAME = ".invrep-failures"
RECORD_VERSION = 1
JOURNAL_SUFFIX = ".jsonl"
#: the journal is folded into the JSON record after this many lines (and at the end of a run)
_JOURNAL_FOLD_LINES = 500


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
