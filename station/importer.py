"""``fieldtriage station import``: verify segment files, store their records, check the chains
between segments, and report every gap, duplicate, reordering and alteration.

Sources are segment files or folders searched for ``segment-*.ftj`` (a sync stick, a kiosk's journal
folder). A folder named with a 32-hex-digit kiosk id is expected to hold that kiosk's segments only.

Example::

    >>> import tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> from station.home import StationHome
    >>> StationHome(home).init()
    >>> import_sources(StationHome(home), [home]).records_new
    0
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal.keys import raw_public
from agent.journal.segment_format import CHAIN_BYTES, SEGMENT_PREFIX, SEGMENT_SUFFIX, key_id_of_raw
from agent.journal.tail import MAX_SEGMENT_FILE_BYTES
from filters.errors import StationError
from station.findings import Finding, Severity
from station.home import StationHome
from station.store import Store, body_to_json
from station.verify import VerifiedSegment, verify_segment

KIOSK_FOLDER = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ImportSummary:
    files: int = 0
    records_new: int = 0
    records_known: int = 0
    kiosks_new: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    new_findings: list[Finding] = field(default_factory=list)


def segment_paths(sources: Sequence[Path]) -> list[Path]:
    paths: list[Path] = []
    for source in sources:
        if source.is_dir():
            paths.extend(sorted(source.rglob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")))
        elif source.is_file():
            paths.append(source)
        else:
            raise StationError(source, "no such file or folder")
    return list(dict.fromkeys(p.resolve() for p in paths))


def import_sources(home: StationHome, sources: Sequence[Path], store: Store | None = None) -> ImportSummary:
    station_key = home.journal_private_key()
    station_key_id = key_id_of_raw(raw_public(station_key.public_key()))
    paths = segment_paths(sources)
    own_store = store is None
    store = store or Store.open(home.database_path)
    summary = ImportSummary(files=len(paths))
    now = time.time_ns()
    touched: set[tuple[str, int]] = set()
    try:
        for path in paths:
            data = _read(path, summary)
            if data is None:
                continue
            expected = path.parent.name if KIOSK_FOLDER.match(path.parent.name) else None
            verified, findings = verify_segment(path, data, station_key, station_key_id, expected)
            summary.findings.extend(findings)
            if verified is not None:
                with store.transaction():
                    if _store_segment(store, verified, summary, now):
                        touched.add((verified.header.kiosk_id, verified.header.number))
        with store.transaction():
            for kiosk, number in sorted(touched):
                summary.findings.extend(_link_findings(store, kiosk, number))
            for finding in summary.findings:
                if store.add_finding(finding, now):
                    summary.new_findings.append(finding)
    finally:
        if own_store:
            store.close()
    return summary


def _read(path: Path, summary: ImportSummary) -> bytes | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SEGMENT_FILE_BYTES + 1)
    except OSError as err:
        summary.findings.append(
            Finding("warning", str(path), None, None, None, f"cannot read: {err.strerror}")
        )
        return None
    if len(data) > MAX_SEGMENT_FILE_BYTES:
        summary.findings.append(Finding("alarm", str(path), None, None, None, "larger than any segment"))
        return None
    return data


def _store_segment(store: Store, segment: VerifiedSegment, summary: ImportSummary, now: int) -> bool:
    """Store what is new; False when the segment conflicts with one imported before."""
    header, db = segment.header, store.connection
    kiosk = header.kiosk_id

    def alarm(record: int | None, message: str) -> None:
        summary.findings.append(Finding("alarm", str(segment.path), kiosk, header.number, record, message))

    if not db.execute("SELECT 1 FROM kiosks WHERE kiosk_id = ?", (kiosk,)).fetchone():
        db.execute("INSERT INTO kiosks VALUES (?, ?, ?, ?, NULL)", (kiosk, header.kiosk_key, now, now))
        summary.kiosks_new.append(kiosk)
        summary.findings.append(
            Finding(
                "notice", str(segment.path), kiosk, None, None, "new kiosk, registered at its first import"
            )
        )
    known = db.execute(
        "SELECT header_hash FROM segments WHERE kiosk_id = ? AND number = ?", (kiosk, header.number)
    ).fetchone()
    if known is not None and known[0] != header.hash:
        alarm(None, "differs from the segment with this number imported before (forked or forged journal)")
        return False
    if known is None:
        created = header.created
        db.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            (
                kiosk,
                header.number,
                header.hash,
                header.previous_chain,
                header.previous_records,
                int(header.previous_sealed),
                header.previous_torn_bytes,
                created.get("wall_ns"),
                created.get("boot_id"),
            ),
        )
    if segment.seal is not None:
        db.execute(
            "UPDATE segments SET sealed_count = ?, sealed_chain = ? "
            "WHERE kiosk_id = ? AND number = ? AND sealed_count IS NULL",
            (segment.seal[0], segment.seal[1], kiosk, header.number),
        )
    new = 0
    for record in segment.records:
        stored = db.execute(
            "SELECT chain FROM records WHERE kiosk_id = ? AND segment = ? AND idx = ?",
            (kiosk, header.number, record.index),
        ).fetchone()
        if stored is not None:
            summary.records_known += 1
            if stored[0] != record.chain:
                alarm(
                    record.index, "differs from the record with this index imported before (forked journal)"
                )
            continue
        stamp, body = record.time, record.body
        kind, scan_id = body.get("type"), body.get("scan_id")
        db.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kiosk,
                header.number,
                record.index,
                record.chain,
                _int(stamp.get("wall_ns")),
                _int(stamp.get("monotonic_ns")),
                str(stamp.get("boot_id", "")),
                _flag(stamp.get("clock_synchronised")),
                kind if isinstance(kind, str) else None,
                scan_id if isinstance(scan_id, str) else None,
                body_to_json(body),
            ),
        )
        new += 1
    if new:
        summary.records_new += new
        db.execute(
            "UPDATE kiosks SET last_import_ns = ?, last_record_wall_ns = "
            "(SELECT MAX(wall_ns) FROM records WHERE kiosk_id = ?) WHERE kiosk_id = ?",
            (now, kiosk, kiosk),
        )
    return True


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(value: object) -> int | None:
    return int(value) if isinstance(value, bool) else None


def _link_findings(store: Store, kiosk: str, number: int) -> list[Finding]:
    """What the headers of ``number`` and ``number + 1`` say about their predecessors."""
    findings: list[Finding] = []
    for later in (number, number + 1):
        findings.extend(_check_link(store, kiosk, later))
    return findings


def _check_link(store: Store, kiosk: str, number: int) -> list[Finding]:
    db = store.connection
    row = db.execute(
        "SELECT previous_chain, previous_records, previous_sealed, previous_torn_bytes FROM segments "
        "WHERE kiosk_id = ? AND number = ?",
        (kiosk, number),
    ).fetchone()
    if row is None:
        return []
    previous_chain, previous_records, previous_sealed, previous_torn = row
    out: list[Finding] = []

    def say(severity: Severity, segment: int, record: int | None, message: str) -> None:
        out.append(Finding(severity, "database", kiosk, segment, record, message))

    if number == 0:
        if previous_chain != bytes(CHAIN_BYTES) or previous_records:
            say("alarm", 0, None, "first segment claims a predecessor")
        return out
    before = db.execute(
        "SELECT header_hash, sealed_count, sealed_chain FROM segments WHERE kiosk_id = ? AND number = ?",
        (kiosk, number - 1),
    ).fetchone()
    if before is None:
        say("warning", number - 1, None, f"segment missing (segment {number} follows it)")
        return out
    header_hash, sealed_count, sealed_chain = before
    if not previous_sealed:
        torn = f", {previous_torn} torn bytes set aside" if previous_torn else ""
        say("notice", number - 1, None, f"was not closed (power cut or write failure){torn}")
    if sealed_count is not None and (sealed_count, sealed_chain) != (previous_records, previous_chain):
        say(
            "alarm",
            number,
            None,
            f"does not continue segment {number - 1} as sealed (segments from two journals)",
        )
        return out
    have = db.execute(
        "SELECT COUNT(*) FROM records WHERE kiosk_id = ? AND segment = ? AND idx < ?",
        (kiosk, number - 1, previous_records),
    ).fetchone()[0]
    if have < previous_records:
        say(
            "warning",
            number - 1,
            None,
            f"{previous_records - have} of its {previous_records} records "
            f"missing (segment {number} says it had {previous_records})",
        )
    last = db.execute(
        "SELECT chain FROM records WHERE kiosk_id = ? AND segment = ? AND idx = ?",
        (kiosk, number - 1, previous_records - 1),
    ).fetchone()
    final = header_hash if previous_records == 0 else (last[0] if last else None)
    if final is not None and final != previous_chain:
        say("alarm", number, None, f"does not continue segment {number - 1} (chain differs)")
    extra = db.execute(
        "SELECT MIN(idx) FROM records WHERE kiosk_id = ? AND segment = ? AND idx >= ?",
        (kiosk, number - 1, previous_records),
    ).fetchone()[0]
    if extra is not None:
        say(
            "alarm", number - 1, extra, f"lies beyond the {previous_records} records segment {number} counted"
        )
    return out
