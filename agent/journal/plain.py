"""A readable journal: one JSON object per line, fsync'd per record, same interface as the
encrypted one. For tests and for a kiosk not yet paired with a station (it has no key to seal to).

Bytes are written as ``{"$b64": "..."}``. A torn last line (power cut) is set aside at reopen by
starting a new line, so it stays visible but never merges with the next record.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with PlainJournal.open(folder) as journal:
    ...     journal.append({"type": "lights", "shown": "green", "raw": b"\\x00"})
    >>> records, torn = read_plain_journal(folder)
    >>> records[0]["shown"], records[0]["raw"], torn
    ('green', b'\\x00', 0)
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.journal.clock import ClockReader
from agent.journal.records import normalised, with_header
from agent.journal.writer import lock_journal_folder
from filters.errors import JournalError

PLAIN_JOURNAL_NAME = "journal.jsonl"


class PlainJournal:
    """``PlainJournal(folder)`` or ``PlainJournal.open(folder)``: opens (creates) ``journal.jsonl``."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        clock: ClockReader | None = None,
        kiosk: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self._kiosk = dict(kiosk) if kiosk else None  # records.kiosk_header: in every record
        self.path = self.folder / PLAIN_JOURNAL_NAME
        self.healthy = True
        self.last_error: JournalError | None = None
        self._clock = clock or ClockReader()
        self._lock_fd = lock_journal_folder(self.folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # sets a torn last line aside
                os.fsync(fd)
        except OSError as err:
            os.close(self._lock_fd)
            raise JournalError(self.path, f"cannot open: {err.strerror}") from err
        self._fd: int | None = fd

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        clock: ClockReader | None = None,
        kiosk: Mapping[str, str] | None = None,
    ) -> PlainJournal:
        return cls(folder, clock, kiosk)

    def append(self, record: Mapping[str, Any]) -> None:
        if self._fd is None:
            raise JournalError(self.path, "journal is closed")
        line = json.dumps(
            with_header(normalised(record), self._clock.now(), self._kiosk), default=_encode_bytes
        )
        data = line.encode("utf-8") + b"\n"
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fdatasync(self._fd)
        except OSError as err:
            self.healthy = False
            self.last_error = JournalError(self.path, f"cannot write: {err.strerror}")
            raise self.last_error from err
        self.healthy = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = None

    def __enter__(self) -> PlainJournal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _encode_bytes(value: object) -> object:
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _decode_bytes(mapping: dict[str, Any]) -> object:
    if set(mapping) == {"$b64"} and isinstance(mapping["$b64"], str):
        return base64.b64decode(mapping["$b64"])
    return mapping


def read_plain_journal(folder: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """(records, number of unreadable lines set aside)."""
    path = Path(folder) / PLAIN_JOURNAL_NAME
    records: list[dict[str, Any]] = []
    unreadable = 0
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise JournalError(path, f"cannot read: {err.strerror}") from err
    for line in lines:
        try:
            value = json.loads(line, object_hook=_decode_bytes)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            unreadable += 1
    return records, unreadable
