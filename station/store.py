"""The station's SQLite database: enrolled kiosks, segments, decrypted records, records kept aside,
findings.

Every insert is idempotent (a record is identified by kiosk, segment and index; a finding by what it
says about what), so importing the same data twice changes nothing. Record bodies are stored as
JSON: bytes as ``{"$b64": ...}``, and a key of the record's own that starts with ``$`` with one
more ``$`` in front, so that nothing a kiosk journals can read back as something else. Scan
reports are derived from the bodies when asked. A record that fails its schema
(``station.record_schema``) or is dated after its kiosk was retired is not in ``records`` but in
``kept_records``, with its body as CBOR and the reason (docs/journal-format.md, section 10).

Example::

    >>> store = Store.open(":memory:")
    >>> store.kiosk_ids()
    []
    >>> body_from_json(body_to_json({"raw": b"\\x00", "$b64": "x"}))
    {'$b64': 'x', 'raw': b'\\x00'}
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from filters.errors import StationError
from station.findings import Finding

SCHEMA_VERSION = "2"
BYTES_KEY = "$b64"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kiosks (
    kiosk_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, name TEXT NOT NULL, location TEXT NOT NULL,
    hostname TEXT NOT NULL, provisioned TEXT NOT NULL, enrolled_ns INTEGER NOT NULL,
    retired_from_ns INTEGER, retired_ns INTEGER,
    first_import_ns INTEGER, last_import_ns INTEGER, last_record_wall_ns INTEGER);
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
CREATE TABLE IF NOT EXISTS kept_records (
    kiosk_id TEXT NOT NULL, segment INTEGER NOT NULL, idx INTEGER NOT NULL, chain BLOB NOT NULL,
    reason TEXT NOT NULL, body BLOB NOT NULL, kept_ns INTEGER NOT NULL,
    PRIMARY KEY (kiosk_id, segment, idx));
CREATE VIEW IF NOT EXISTS chained_records AS
    SELECT kiosk_id, segment, idx, chain FROM records
    UNION ALL SELECT kiosk_id, segment, idx, chain FROM kept_records;
CREATE TABLE IF NOT EXISTS findings (
    kiosk_id TEXT NOT NULL, segment INTEGER NOT NULL, record INTEGER NOT NULL, severity TEXT NOT NULL,
    message TEXT NOT NULL, source TEXT NOT NULL, first_seen_ns INTEGER NOT NULL,
    UNIQUE (kiosk_id, segment, record, message));
"""
# schema 1 registered a kiosk at its first import and stored "$" keys as they were
MIGRATE_FROM_1 = """
ALTER TABLE kiosks RENAME TO kiosks_1;
CREATE TABLE kiosks (
    kiosk_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, name TEXT NOT NULL, location TEXT NOT NULL,
    hostname TEXT NOT NULL, provisioned TEXT NOT NULL, enrolled_ns INTEGER NOT NULL,
    retired_from_ns INTEGER, retired_ns INTEGER,
    first_import_ns INTEGER, last_import_ns INTEGER, last_record_wall_ns INTEGER);
INSERT INTO kiosks SELECT kiosk_id, public_key, '', '', '', '', first_import_ns, NULL, NULL,
    first_import_ns, last_import_ns, last_record_wall_ns FROM kiosks_1;
DROP TABLE kiosks_1;
"""


def _escaped(value: object) -> object:
    if isinstance(value, bytes):
        return {BYTES_KEY: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {("$" + k if k.startswith("$") else k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def body_to_json(body: dict[str, Any]) -> str:
    """ValueError for what JSON cannot hold (an integer of more than 4,300 digits)."""
    return json.dumps(_escaped(body), sort_keys=True, allow_nan=True)


def _unescaped(mapping: dict[str, Any]) -> object:
    if set(mapping) == {BYTES_KEY} and isinstance(mapping[BYTES_KEY], str):
        try:
            return base64.b64decode(mapping[BYTES_KEY], validate=True)
        except (binascii.Error, ValueError):
            return mapping
    return {(k[1:] if k.startswith("$") else k): v for k, v in mapping.items()}


def body_from_json(text: str) -> dict[str, Any]:
    value = json.loads(text, object_hook=_unescaped)
    return value if isinstance(value, dict) else {}


def _body_from_json_1(text: str) -> object:
    def decode(mapping: dict[str, Any]) -> object:
        if set(mapping) == {BYTES_KEY} and isinstance(mapping[BYTES_KEY], str):
            try:
                return base64.b64decode(mapping[BYTES_KEY], validate=True)
            except (binascii.Error, ValueError):
                return mapping
        return mapping

    return json.loads(text, object_hook=decode)


@dataclass(frozen=True)
class KeptRecord:
    """A record set aside: authentic (signed, chained, decrypted) but not stored with the others."""

    kiosk: str
    segment: int
    index: int
    reason: str
    body: dict[str, Any]
    kept_ns: int


def _cbor_body(data: bytes) -> dict[str, Any]:
    try:
        value = cbor2.loads(data)
    except Exception:  # written by keep_record: only a damaged database gets here
        return {}
    return value if isinstance(value, dict) else {}


class Store:
    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        name = str(path)
        if name != ":memory:" and not create and not Path(name).exists():
            raise StationError(name, "no database yet: enroll a kiosk or import journals first")
        try:
            connection = sqlite3.connect(name, isolation_level=None)
        except sqlite3.Error as err:
            raise StationError(name, f"cannot open the database: {err}") from err
        store = cls(connection, name)
        try:
            with store.transaction():
                found = _schema_version(connection)
                if found == "1":
                    _migrate_from_1(connection)
                elif found not in (None, SCHEMA_VERSION):
                    raise StationError(
                        name, f"database schema {found!r}, this station reads {SCHEMA_VERSION!r}"
                    )
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except BaseException:
            connection.close()
            raise
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

    def keep_record(
        self,
        kiosk: str,
        segment: int,
        index: int,
        chain: bytes,
        reason: str,
        body: Mapping[str, Any],
        now_ns: int,
    ) -> bool:
        """Set a record aside (its body as CBOR, as decrypted) with the reason; False if it was already."""
        with self.guard():
            cursor = self.connection.execute(
                "INSERT OR IGNORE INTO kept_records VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kiosk, segment, index, chain, reason, cbor2.dumps(dict(body)), now_ns),
            )
            return cursor.rowcount == 1

    def kept_records(self, kiosk: str | None = None) -> list[KeptRecord]:
        """The records set aside (of one kiosk, or all), in journal order."""
        rows = self.query(
            "SELECT kiosk_id, segment, idx, reason, body, kept_ns FROM kept_records "
            "WHERE ? IS NULL OR kiosk_id = ? ORDER BY kiosk_id, segment, idx",
            (kiosk, kiosk),
        )
        return [KeptRecord(k, s, i, r, _cbor_body(b), n) for k, s, i, r, b, n in rows]

    def remove_findings(self, kiosk: str, segment: int | None, messages: Iterable[str]) -> int:
        """Forget findings that no longer hold (a missing segment arrived); how many went."""
        removed = 0
        with self.guard():
            for message in messages:
                removed += self.connection.execute(
                    "DELETE FROM findings WHERE kiosk_id = ? AND segment = ? AND message = ?",
                    (kiosk, -1 if segment is None else segment, message),
                ).rowcount
        return removed

    def close(self) -> None:
        self.connection.close()


def _schema_version(connection: sqlite3.Connection) -> str | None:
    has_meta = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return None
    found = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if found is None else str(found[0])


def _migrate_from_1(connection: sqlite3.Connection) -> None:
    """Kiosks registered at a first import stay known, with no name until enrolled; bodies are
    written again with this schema's escaping of ``$`` keys."""
    for statement in MIGRATE_FROM_1.split(";"):
        if statement.strip():
            connection.execute(statement)
    rows = connection.execute("SELECT rowid, body FROM records").fetchall()
    for rowid, text in rows:
        value = _body_from_json_1(text)
        if isinstance(value, dict):
            connection.execute("UPDATE records SET body = ? WHERE rowid = ?", (body_to_json(value), rowid))
