"""Kiosk side of a sync stick: copy unsynced segments to it, take new filters and trust keys from it.

Stick layout (docs/journal-format.md, section 7)::

    fieldtriage-sync.token                  station-signed, bound to the stick's filesystem UUID
    fieldtriage-journal/KIOSK_ID/segment-*.ftj     written here by kiosks (sealed to the station)
    fieldtriage-filters/*.ftf               provider-signed filters, checked against the trust store
    fieldtriage-trust/NAME.pub + NAME.pub.sig      provider keys the station signed

A copy is atomic (temporary file, fsync, rename, fsync of the folder) and only then recorded in
``sync-state.json`` in the journal folder. Nothing is ever deleted here: a segment counts as synced
only when it is closed (a later segment exists) and its whole size was copied.

Example::

    >>> import tempfile, pathlib
    >>> export_segments(pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp()))
    []
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from agent.journal.copying import copy_atomically
from agent.journal.segment_format import SegmentFormatError, parse_header
from agent.journal.stick_filters import FILTER_FOLDER, TRUST_FOLDER, StickImport, import_filters_from_stick
from agent.journal.sync_token import SyncToken, verify_sync_token
from agent.journal.tail import segment_files
from filters.errors import JournalError

JOURNAL_FOLDER = "fieldtriage-journal"
STATE_NAME = "sync-state.json"

__all__ = [
    "FILTER_FOLDER",
    "JOURNAL_FOLDER",
    "TRUST_FOLDER",
    "StickImport",
    "SyncToken",
    "export_segments",
    "filesystem_uuid",
    "import_filters_from_stick",
    "unsynced_segments",
    "verify_sync_token",
]


def load_sync_state(journal_folder: Path) -> dict[str, int]:
    """Segment file name -> bytes of it copied to a stick so far."""
    path = journal_folder / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise JournalError(path, f"unreadable sync state: {err}") from err
    exported = state.get("exported") if isinstance(state, dict) else None
    if not isinstance(exported, dict):
        raise JournalError(path, "sync state has no 'exported' map")
    return {str(k): v for k, v in exported.items() if isinstance(v, int)}


def _save_sync_state(journal_folder: Path, exported: dict[str, int]) -> None:
    path = journal_folder / STATE_NAME
    temporary = journal_folder / f".{STATE_NAME}.tmp"
    try:
        with temporary.open("w", encoding="utf-8") as f:
            json.dump({"exported": exported}, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as err:
        raise JournalError(path, f"cannot write sync state: {err.strerror}") from err


def unsynced_segments(journal_folder: Path) -> list[Path]:
    """Segments not yet copied whole after they were closed: the ones that must never be deleted."""
    exported = load_sync_state(journal_folder)
    segments = segment_files(journal_folder)
    last = segments[-1][0] if segments else None
    pending = []
    for number, path in segments:
        if number == last or exported.get(path.name) != _size(path):
            pending.append(path)
    return pending


def export_segments(journal_folder: Path, target_folder: Path) -> list[Path]:
    """Copy every segment that changed since its last export to ``target/fieldtriage-journal/KIOSK``.

    The open segment is copied as far as it is written (the station sets a torn end aside and takes
    the rest at the next sync); call ``EncryptedJournal.rotate()`` first to close it.
    """
    exported = load_sync_state(journal_folder)
    copied = []
    segments = segment_files(journal_folder)
    kiosk: str | None = None
    for _, path in segments:
        size = _size(path)
        if exported.get(path.name) == size:
            continue
        kiosk = kiosk or _kiosk_of_folder(path, segments)
        destination = target_folder / JOURNAL_FOLDER / kiosk / path.name
        exported[path.name] = copy_atomically(path, destination, limit=size)
        _save_sync_state(journal_folder, exported)
        copied.append(destination)
    return copied


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as err:
        raise JournalError(path, f"cannot stat: {err.strerror}") from err


def _kiosk_of_folder(first: Path, segments: list[tuple[int, Path]]) -> str:
    """The kiosk every segment of the folder belongs to, from the first header that parses: a
    segment cut short while it was created (a power cut) is exported with the others, for the
    station to set aside, and never stops an export."""
    reasons = []
    for path in [first, *(p for _, p in segments if p != first)]:
        try:
            with path.open("rb") as f:
                head = f.read(8192)
            return parse_header(memoryview(head)).kiosk_id
        except OSError as err:
            reasons.append(f"{path.name}: cannot read: {err.strerror}")
        except SegmentFormatError as err:
            reasons.append(f"{path.name}: damaged segment header: {err}")
    raise JournalError(first.parent, f"no segment names its kiosk ({'; '.join(reasons[:3])})")


def filesystem_uuid(folder: Path) -> str:
    """The UUID of the filesystem holding ``folder`` (findmnt), "" when it has none."""
    try:
        done = subprocess.run(
            ["findmnt", "--noheadings", "--output", "UUID", "--target", str(folder)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise JournalError(folder, f"cannot run findmnt: {err}") from err
    return done.stdout.strip().lower() if done.returncode == 0 else ""
