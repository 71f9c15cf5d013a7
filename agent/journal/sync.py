"""Kiosk side of a sync stick: copy unsynced segments to it, take new filters and trust keys from it.

Stick layout (docs/journal-format.md, section 7)::

    fieldtriage-sync.token                  station-signed, bound to the stick's filesystem UUID
    fieldtriage-journal/KIOSK_ID/segment-*.ftj     written here by kiosks (sealed to the station)
    fieldtriage-filters/*.ftf               provider-signed filters, checked against the trust store
    fieldtriage-trust/NAME.pub + NAME.pub.sig      provider keys the station signed

A copy is the kiosk's file byte for byte followed by an export seal (the number of bytes copied
and their BLAKE3, signed by the device key), so that the station can tell a whole copy from one cut
short or altered on the way, whatever the segment's state: open, set aside after a power cut, or
sealed. It is atomic (temporary file, fsync, rename, fsync of the folder) and only then recorded in
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

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.journal.copying import fsync_folder
from agent.journal.keys import raw_public
from agent.journal.segment_format import (
    SegmentFormatError,
    encode_export_seal,
    export_digest,
    export_seal_signed_message,
    key_id_of_raw,
    parse_header,
)
from agent.journal.stick_filters import FILTER_FOLDER, TRUST_FOLDER, StickImport, import_filters_from_stick
from agent.journal.sync_token import SyncToken, verify_sync_token
from agent.journal.tail import DEVICE_KEY_NOTE, read_segment_bytes, remembered_device_key, segment_files
from filters.errors import JournalError
from filters.keys import load_private_key

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


DeviceKey = Ed25519PrivateKey | str | os.PathLike[str] | None


def export_segments(journal_folder: Path, target_folder: Path, device_key: DeviceKey = None) -> list[Path]:
    """Copy every segment that changed since its last export to ``target/fieldtriage-journal/KIOSK``,
    each copy followed by its export seal.

    The open segment is copied as far as it is written (the station takes the rest at the next
    sync); ``EncryptedJournal.rotate()`` first closes it. ``device_key`` (the key, or its file)
    signs the export seals; by default the key the journal was last opened with (the writer notes
    its path in the folder). JournalError (or KeyFileError) when no key can sign, or when the key
    is not the one that wrote the journal.
    """
    exported = load_sync_state(journal_folder)
    copied = []
    segments = segment_files(journal_folder)
    kiosk: str | None = None
    signer = _ExportSigner(journal_folder, device_key)
    for _, path in segments:
        size = _size(path)
        if exported.get(path.name) == size:
            continue
        kiosk = kiosk or _kiosk_of_folder(path, segments)
        destination = target_folder / JOURNAL_FOLDER / kiosk / path.name
        data = read_segment_bytes(path)[:size]
        _write_atomically(destination, data, signer.export_seal(data, kiosk), path.name)
        exported[path.name] = len(data)
        _save_sync_state(journal_folder, exported)
        copied.append(destination)
    return copied


class _ExportSigner:
    """Signs export seals with the device key, loaded at the first copy that needs one."""

    def __init__(self, journal_folder: Path, device_key: DeviceKey) -> None:
        self._folder = journal_folder
        self._given = device_key
        self._key: Ed25519PrivateKey | None = None

    def export_seal(self, data: bytes, kiosk: str) -> bytes:
        """The export seal for a copy of ``data``; none for a file whose header cannot be read (a
        segment cut short while it was created holds no record) or that another kiosk wrote (it is
        not this kiosk's to vouch for): the station reports both."""
        try:
            header = parse_header(memoryview(data))
        except SegmentFormatError:
            return b""
        if header.kiosk_id != kiosk:
            return b""
        key = self._device_key(kiosk)
        digest = export_digest(data)
        signature = key.sign(export_seal_signed_message(header.hash, len(data), digest))
        return encode_export_seal(len(data), digest, signature)

    def _device_key(self, kiosk: str) -> Ed25519PrivateKey:
        if self._key is not None:
            return self._key
        given = self._given
        if isinstance(given, Ed25519PrivateKey):
            key, where = given, "the device key"
        else:
            path = Path(given) if given is not None else remembered_device_key(self._folder)
            if path is None:
                raise JournalError(
                    self._folder / DEVICE_KEY_NOTE,
                    "no device key to sign the export seals with (the journal was not opened by this "
                    "version here): name it (journal export --device-key FILE)",
                )
            key, where = load_private_key(path), str(path)
        signs_for = key_id_of_raw(raw_public(key.public_key())).hex()
        if signs_for != kiosk:
            raise JournalError(where, f"is the key of kiosk {signs_for}, not of kiosk {kiosk} (its journal)")
        self._key = key
        return key


def _write_atomically(destination: Path, data: bytes, seal: bytes, name: str) -> None:
    """``data`` then ``seal`` to ``destination``: a temporary file, fsync, rename, folder fsync."""
    temporary = destination.with_name(f".{destination.name}.tmp")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as writer:
            writer.write(data)
            writer.write(seal)
            writer.flush()
            os.fsync(writer.fileno())
        temporary.replace(destination)
        fsync_folder(destination.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise JournalError(destination, f"cannot copy {name}: {err.strerror}") from err


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
