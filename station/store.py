"""The station's SQLite database: kiosks, segments, decrypted records, findings.

Every insert is idempotent (a record is identified by kiosk, segment and index; a finding by what it
says about what), so importing the same data twice changes nothing. Record bodies are stored as
JSON (bytes as ``{"$b64": ...}``); scan reports are derived from them when asked.

Example::

    >>> store = Store.open(":memory:")
    >>> store.kiosk_ids()
    []
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filters.errors import StationError
from station.findings import Finding

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kiosks (
    kiosk_id TEXT PRIMARY KEY, public_key BLOB NOT NULL,
    first_import_ns INTEGER NOT NULL, last_import_ns INTEGER NOT NULL, last_record_wall_ns INTEGER);
CREATE TABLE IF NOT EXISTS segments (
    kiosk_id TEXT NOT NULL, number INTEGER NOT NULL, header_hash BLOB NOT NULL,
    previous_chain BLOB NOT NULL, previous_records INTEGER NOT NULL, previous_sealed INTEGER NOT NULL,
    previous_torn_bytes INTEGER NOT NULL, created_wall_ns INTEGER, created_boot_id TEXT,
    sealed_count INTEGER, sealed_chain BLOB, PRIMARY KEY (kiosk_id, number));
CREATE TABLE IF NOT EXISTS records (
    kiosk_id TEXT NOT NULL, segment INTEGER NOT NULL, idx INTEGER NOT NULL, chain BLOB NOT NULL,
    wall_ns INTEGER, monotonic_ns INTEGER, boot_id TEXT, clock_synchronised INTEGER,
    type TEXT, scan_id TEXT, body TEXT NOT NULL, PRIMARY KEY (kiosk_id, segment, idx));
CREATE INDEX IF NOT EXISTS records_by_scan ON records (kiosk_id, scan_id);
CREATE TABLE IF NOT EXISTS findings (
    kiosk_id TEXT NOT NULL, segment INTEGER NOT NULL, record INTEGER NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, source TEXT NOT NULL, first_seen_ns INTEGER NOT NULL,
    UNIQUE (kiosk_id, segment, record, message));
"""


def body_to_json(body: dict[str, Any]) -> str:
    def encode(value: object) -> object:
        if isinstance(value, bytes):
            return {"$b64": base64.b64encode(value).decode("ascii")}
        raise TypeError(type(value).__name__)

    return json.dumps(body, default=encode, sort_keys=True, allow_nan=True)


def body_from_json(text: str) -> dict[str, Any]:
    def decode(mapping: dict[str, Any]) -> object:
        if set(mapping) == {"$b64"} and isinstance(mapping["$b64"], str):
            return base64.b64decode(mapping["$b64"])
        return mapping

    value = json.loads(text, object_hook=decode)
    return value if isinstance(value, dict) else {}


class Store:
    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        name = str(path)
        if name != ":memory:" and not create and not Path(name).exists():
            raise StationError(name, "no database yet: import journals first ('fieldtriage station import')")
        try:
            connection = sqlite3.connect(name, isolation_level=None)
        except sqlite3.Error as err:
            raise StationError(name, f"cannot open the database: {err}") from err
        store = cls(connection, name)
        with store.guard():
            connection.executescript(SCHEMA)
            found = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if found is None:
                connection.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif found[0] != SCHEMA_VERSION:
                raise StationError(
                    name, f"database schema {found[0]!r}, this station reads {SCHEMA_VERSION!r}"
                )
        return store

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn any SQLite failure into one StationError line naming the database."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise StationError(self.path, f"not a usable station database ({err})") from err

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.guard():
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.guard():
            return self.connection.execute(sql, parameters).fetchall()

    def kiosk_ids(self) -> list[str]:
        return [row[0] for row in self.query("SELECT kiosk_id FROM kiosks ORDER BY kiosk_id")]

    def add_finding(self, finding: Finding, now_ns: int) -> bool:
        """Store a finding; False when the same finding was stored before."""
        with self.guard():
            cursor = self.connection.execute(
                "INSERT OR IGNORE INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    finding.kiosk or "",
                    -1 if finding.segment is None else finding.segment,
                    -1 if finding.record is None else finding.record,
                    finding.severity,
                    finding.message,
                    finding.source,
                    now_ns,
                ),
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        self.connection.close()
