"""The kiosk's encrypted, hash-chained, signed, durable journal (docs/journal-format.md).

``append()`` seals the record with the segment key, extends the chain, signs (segment header hash,
index, chain hash) with the device key, writes the frame and returns only after fdatasync: a record
reported done survives a power cut. Any write failure raises ``JournalError``, clears ``healthy``
and abandons the segment (a partly written frame must never be followed by a record sealed under the
same key and nonce); the next append starts a new segment. Segments rotate by size or record count.

Example::

    >>> import tempfile, pathlib
    >>> from cryptography.hazmat.primitives import serialization
    >>> from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> station_pub = folder / "station-journal.pub"
    >>> _ = station_pub.write_bytes(X25519PrivateKey.generate().public_key().public_bytes(
    ...     serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    >>> journal = EncryptedJournal.open(folder / "journal", folder / "device.key", station_pub)
    >>> journal.append({"type": "scan_started", "scan_id": "s1"})
    >>> journal.close()
    >>> sorted(p.name for p in (folder / "journal").iterdir())
    ['.device-key-path', '.lock', 'segment-00000000.ftj']
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from agent.journal.clock import ClockReader, header_time
from agent.journal.copying import fsync_folder
from agent.journal.keys import load_or_create_device_key, load_x25519_public_key, raw_public
from agent.journal.records import normalised, with_header
from agent.journal.sealing import new_segment_key
from agent.journal.segment_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_SIGNATURE_CONTEXT,
    MAX_SEALED_BYTES,
    TAG_BYTES,
    encode_preamble,
    encode_record_frame,
    encode_seal_frame,
    header_hash_of,
    key_id_of_raw,
    next_chain,
    record_associated_data,
    record_nonce,
    record_signed_message,
    seal_signed_message,
    segment_name,
)
from agent.journal.tail import JournalTail, read_tail, remember_device_key
from filters import __version__
from filters.errors import JournalError, JournalLocked

MAX_SEGMENT_BYTES = 4 << 20
MAX_SEGMENT_RECORDS = 10_000
LOCK_NAME = ".lock"


class _OpenSegment:
    """The segment being written: its file, key (memory only), chain and size."""

    def __init__(self, path: Path, fd: int, header_hash: bytes, key: bytes, size: int) -> None:
        self.path, self.fd, self.header_hash, self.size = path, fd, header_hash, size
        self.aead = ChaCha20Poly1305(key)
        self.chain = header_hash
        self.count = 0


class EncryptedJournal:
    """A journal only the station can read; see the module docstring. Thread-safe: the daemon
    appends from every bay's thread (one index, one nonce per record needs one writer at a time)."""

    def __init__(
        self,
        folder: Path,
        device_key: Ed25519PrivateKey,
        station_key: X25519PublicKey,
        lock_fd: int,
        tail: JournalTail,
        *,
        clock: ClockReader | None = None,
        max_segment_bytes: int = MAX_SEGMENT_BYTES,
        max_segment_records: int = MAX_SEGMENT_RECORDS,
        kiosk: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.healthy = True
        self.last_error: JournalError | None = None
        self._device_key = device_key
        self._kiosk_raw = raw_public(device_key.public_key())
        self._station_key = station_key
        self._lock_fd: int | None = lock_fd
        self._tail = tail
        self._clock = clock or ClockReader()
        # the kiosk's name and location (records.kiosk_header): in every record, sealed with it (the
        # segment header is not encrypted: a location is for the station's eyes only)
        self._kiosk = dict(kiosk) if kiosk else None
        self._max_bytes = max_segment_bytes
        self._max_records = max_segment_records
        self._segment: _OpenSegment | None = None
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        device_key_path: str | os.PathLike[str],
        station_public_key_path: str | os.PathLike[str],
        **options: Any,
    ) -> EncryptedJournal:
        """Open (creating folder and device key on first start) and continue numbering and chain.

        ``options``: ``clock``, ``max_segment_bytes``, ``max_segment_records``, ``kiosk``.
        """
        folder = Path(folder)
        device_key = load_or_create_device_key(device_key_path)
        station_key = load_x25519_public_key(station_public_key_path)
        lock_fd = lock_journal_folder(folder)
        try:
            for stale in folder.glob(".segment-*.tmp"):
                stale.unlink()  # a header-only file never renamed into place: holds no record
            tail = read_tail(folder, device_key.public_key())
            remember_device_key(folder, Path(device_key_path))
            return cls(folder, device_key, station_key, lock_fd, tail, **options)
        except BaseException as err:  # whatever stops the open, the folder is let go
            os.close(lock_fd)
            if isinstance(err, OSError):
                raise JournalError(folder, f"cannot open: {err.strerror}") from err
            raise

    @property
    def kiosk_id(self) -> str:
        return key_id_of_raw(self._kiosk_raw).hex()

    def append(self, record: Mapping[str, Any]) -> None:
        """Seal, chain, sign, write and fdatasync one record; JournalError if it is not on disk."""
        body = normalised(record)
        with self._lock:
            if self._lock_fd is None:
                raise JournalError(self.folder, "journal is closed")
            plaintext = cbor2.dumps(with_header(body, self._clock.now(), self._kiosk))
            if len(plaintext) + TAG_BYTES > MAX_SEALED_BYTES:
                raise JournalError(
                    "record", f"{len(plaintext)} bytes encoded, limit {MAX_SEALED_BYTES - TAG_BYTES}"
                )
            try:
                segment = self._segment_for_next_record()
                index = segment.count
                sealed = segment.aead.encrypt(
                    record_nonce(index), plaintext, record_associated_data(segment.header_hash, index)
                )
                chain = next_chain(segment.chain, sealed)
                message = record_signed_message(segment.header_hash, index, chain)
                frame = encode_record_frame(index, sealed, chain, self._device_key.sign(message))
                self._write_durably(segment, frame)
            except JournalError as err:
                self._fail(err)
                raise
            segment.chain, segment.count = chain, index + 1
            self.healthy = True

    def close(self) -> None:
        """Seal the open segment and release the folder; JournalError if the seal is not on disk."""
        with self._lock:
            if self._lock_fd is None:
                return
            try:
                self.rotate()
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def rotate(self) -> None:
        """Seal the open segment now (e.g. before a sync); the next append starts a new one."""
        with self._lock:
            segment = self._segment
            if segment is None:
                return
            message = seal_signed_message(segment.header_hash, segment.count, segment.chain)
            seal = encode_seal_frame(segment.count, segment.chain, self._device_key.sign(message))
            try:
                self._write_durably(segment, seal)
            except JournalError as err:
                self._fail(err)
                raise
            self._segment = None
            os.close(segment.fd)
            self._tail = JournalTail(self._tail.next_number, segment.chain, segment.count, True, 0)

    def __enter__(self) -> EncryptedJournal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _fail(self, err: JournalError) -> None:
        """Record the fault and abandon the open segment (its tail is set aside, never appended to)."""
        self.healthy = False
        self.last_error = err
        segment, self._segment = self._segment, None
        if segment is None:
            return
        torn = 0
        try:
            os.ftruncate(segment.fd, segment.size)
        except OSError:
            try:
                torn = max(0, os.fstat(segment.fd).st_size - segment.size)
            except OSError:
                pass
        os.close(segment.fd)
        self._tail = JournalTail(self._tail.next_number, segment.chain, segment.count, False, torn)

    def _segment_for_next_record(self) -> _OpenSegment:
        segment = self._segment
        if segment is not None and (segment.size >= self._max_bytes or segment.count >= self._max_records):
            self.rotate()
            segment = None
        if segment is None:
            segment = self._segment = self._start_segment()
        return segment

    def _start_segment(self) -> _OpenSegment:
        tail = self._tail
        number = tail.next_number
        ephemeral_raw, key = new_segment_key(self._station_key, self._kiosk_raw, number)
        header = cbor2.dumps(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "kiosk_key": self._kiosk_raw,
                "station_key_id": key_id_of_raw(raw_public(self._station_key)),
                "segment": number,
                "previous_chain": tail.previous_chain,
                "previous_records": tail.previous_records,
                "previous_sealed": tail.previous_sealed,
                "previous_torn_bytes": tail.previous_torn_bytes,
                "ephemeral_key": ephemeral_raw,
                "created": header_time(self._clock.now()),  # the four fields, no clock_source
                "writer": f"fieldtriage {__version__}",
            },
            canonical=True,
        )
        preamble = encode_preamble(header, self._device_key.sign(HEADER_SIGNATURE_CONTEXT + header))
        path = self.folder / segment_name(number)
        header_hash = header_hash_of(header)
        try:
            fd = _create_durably(path, preamble)
        except JournalError:
            if os.path.lexists(path):  # renamed into place, then a failure: the name is taken
                self._tail = JournalTail(number + 1, header_hash, 0, False, 0)
            raise
        # The next segment number is taken even if this one is later abandoned: never reuse a name.
        self._tail = JournalTail(
            number + 1, tail.previous_chain, tail.previous_records, tail.previous_sealed, 0
        )
        return _OpenSegment(path, fd, header_hash, key, len(preamble))

    @staticmethod
    def _write_durably(segment: _OpenSegment, frame: bytes) -> None:
        try:
            _write_all(segment.fd, frame)
            os.fdatasync(segment.fd)
        except OSError as err:
            raise JournalError(segment.path, f"cannot write: {err.strerror}") from err
        segment.size += len(frame)


def lock_journal_folder(folder: Path) -> int:
    """An exclusive lock on the folder (one writer at a time); its fd is held until close."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise JournalError(folder, f"cannot create the journal folder: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise JournalLocked(folder, "journal is in use by another process") from err
    return fd


def _create_durably(path: Path, preamble: bytes) -> int:
    """Write the header to a temporary file, fsync, rename into place, fsync the folder."""
    temporary = path.with_name(f".{path.stem}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, preamble)  # a nearly full disk writes part and says so: never rename that
            os.fsync(fd)
            os.rename(temporary, path)
            fsync_folder(path.parent)
        except OSError:
            os.close(fd)
            raise
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise JournalError(path, f"cannot create segment: {err.strerror}") from err
    os.close(fd)
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as err:
        raise JournalError(path, f"cannot open segment: {err.strerror}") from err


def _write_all(fd: int, data: bytes) -> None:
    view, written = memoryview(data), 0
    while written < len(data):
        written += os.write(fd, view[written:])
