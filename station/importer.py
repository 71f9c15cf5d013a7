"""``fieldtriage station import``: verify segment files of enrolled kiosks, check every record against
its schema, store them, check the chains between segments, and report every gap, duplicate,
reordering and alteration.

Sources are segment files or folders searched for ``segment-*.ftj`` (a sync stick, a kiosk's journal
folder). A folder named with a 32-hex-digit kiosk id is expected to hold that kiosk's segments only.

* A segment signed by a kiosk key that is not enrolled (``station kiosks add``) is refused with an
  alarm naming the key, and a copy is kept aside in the station home,
  ``kept-aside/KIOSK_ID/DIGEST/segment-NNNNNNNN.ftj``. Every import looks there for kiosks enrolled
  since and imports their copies (``station import --kept-aside`` does only that); an imported copy
  moves to ``kept-aside/imported/`` (the station deletes nothing) and its alarm is withdrawn.
* A record that fails its schema (``station.record_schema``), or is dated from the day its kiosk
  was retired, is kept aside in ``kept_records`` with an alarm naming segment and record; the rest
  of the import goes on.
* What a power cut leaves is a notice, as the kiosk sees it (agent/journal/tail.py): zeros at the
  end of a segment, a segment cut short while it was created. A "missing" warning is withdrawn when
  what was missing arrives.

Example::

    >>> import tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> from station.home import StationHome
    >>> StationHome(home).init()
    >>> import_sources(StationHome(home), [home]).records_new
    0
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.journal import segment_format
from agent.journal.copying import fsync_folder
from agent.journal.keys import raw_public
from agent.journal.segment_format import (
    CHAIN_BYTES,
    HEADER_SIGNATURE_CONTEXT,
    RECORD_HEAD,
    RECORD_TYPE,
    SEAL_TYPE,
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    MalformedFrame,
    RecordFrame,
    SealFrame,
    SegmentFormatError,
    SegmentHeader,
    key_id_of_raw,
    parse_frames,
    parse_header,
    segment_name,
    segment_number_of,
)
from agent.journal.tail import MAX_SEGMENT_FILE_BYTES, cut_while_created
from filters.errors import StationError
from station.findings import Finding, Severity
from station.home import StationHome
from station.kiosks import kiosk_labels, retired_message, retired_reason
from station.record_schema import problem as record_problem
from station.record_schema import time_problem
from station.store import Store, body_to_json
from station.verify import VerifiedSegment, verify_segment

KIOSK_FOLDER = re.compile(r"^[0-9a-f]{32}$")
KEPT_ASIDE = "kept-aside"
IMPORTED = "imported"
EXPORTED = ".export"  # a kept-aside copy that came from an export folder
FRAME_AT = re.compile(r"^(?:incomplete frame|frame|seal) at offset (\d+)\b")  # station/verify.py's words
POWER_CUT = "torn tail after a power cut"
# a sealed segment whose copy here ends without a valid seal: an older copy, or a damaged seal
UNSEALED_HERE = "no valid seal in the copy imported"


@dataclass
class ImportSummary:
    files: int = 0
    records_new: int = 0
    records_known: int = 0
    records_kept_aside: int = 0
    segments_kept_aside: list[Path] = field(default_factory=list)  # copies of not enrolled kiosks
    kept_aside_imported: list[Path] = field(default_factory=list)  # copies imported once enrolled
    findings: list[Finding] = field(default_factory=list)
    new_findings: list[Finding] = field(default_factory=list)
    kiosk_labels: dict[str, str] = field(default_factory=dict)


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


def kept_aside_folder(home: StationHome) -> Path:
    return home.folder / KEPT_ASIDE


def kept_aside_segments(home: StationHome) -> dict[str, list[Path]]:
    """Copies waiting for their kiosk to be enrolled, by kiosk id."""
    folder = kept_aside_folder(home)
    if not folder.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for kiosk in sorted(folder.iterdir()):
        if KIOSK_FOLDER.match(kiosk.name) and kiosk.is_dir():
            copies = sorted(kiosk.glob(f"*/{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))
            if copies:
                found[kiosk.name] = copies
    return found


def import_sources(
    home: StationHome, sources: Sequence[Path], store: Store | None = None, *, kept_aside: bool = True
) -> ImportSummary:
    """Import ``sources``, then (``kept_aside``) the kept-aside copies of kiosks enrolled since."""
    station_key = home.journal_private_key()
    kept = kept_aside_folder(home).resolve()
    paths = [p for p in segment_paths(sources) if not p.is_relative_to(kept)]
    own_store = store is None
    store = store or Store.open(home.database_path)
    summary = ImportSummary(files=len(paths))
    run = _Import(home, store, station_key, summary)
    try:
        for path in paths:
            data = run.read(path)
            if data is not None:
                expected = path.parent.name if KIOSK_FOLDER.match(path.parent.name) else None
                run.segment_file(path, data, expected)
        if kept_aside:
            run.kept_aside_copies()
        with store.transaction():
            for kiosk, number in sorted(run.touched):
                summary.findings.extend(_link_findings(store, kiosk, number))
            for finding in summary.findings:
                if store.add_finding(finding, run.now):
                    summary.new_findings.append(finding)
        summary.kiosk_labels = kiosk_labels(store)
    finally:
        if own_store:
            store.close()
    return summary


class _Import:
    def __init__(
        self, home: StationHome, store: Store, station_key: X25519PrivateKey, summary: ImportSummary
    ) -> None:
        self.home, self.store, self.station_key, self.summary = home, store, station_key, summary
        self.station_key_id = key_id_of_raw(raw_public(station_key.public_key()))
        self.now = time.time_ns()
        self.touched: set[tuple[str, int]] = set()

    def read(self, path: Path) -> bytes | None:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_SEGMENT_FILE_BYTES + 1)
        except OSError as err:
            self.summary.findings.append(
                Finding("warning", str(path), None, None, None, f"cannot read: {err.strerror}")
            )
            return None
        if len(data) > MAX_SEGMENT_FILE_BYTES:
            self.summary.findings.append(
                Finding("alarm", str(path), None, None, None, "larger than any segment")
            )
            return None
        return data

    def segment_file(self, path: Path, data: bytes, expected: str | None) -> bool:
        """Import one file; False when it was kept aside (its kiosk is not enrolled)."""
        view = memoryview(data)
        try:
            header: SegmentHeader | None = parse_header(view)
        except SegmentFormatError:
            header = None
        if header is None and cut_while_created(view):
            message = (
                f"{POWER_CUT}: the segment was cut short while it was created ({len(data)} bytes, "
                "no record), set aside"
            )
            number = segment_number_of(path.name)
            self.summary.findings.append(Finding("notice", str(path), expected, number, None, message))
            return True
        if header is not None and self._not_enrolled(header):
            self._keep_aside(path, data, header, expected)
            return False
        verified, findings = verify_segment(path, data, self.station_key, self.station_key_id, expected)
        if header is not None:
            findings = _power_cut_tail(data, header, findings)
        self.summary.findings.extend(findings)
        if verified is not None:
            with self.store.transaction():
                if self._store_segment(verified):
                    self.touched.add((verified.header.kiosk_id, verified.header.number))
        return True

    def _not_enrolled(self, header: SegmentHeader) -> bool:
        """A segment for this station, signed by the key in its header, of a kiosk not enrolled
        (anything else is for verify_segment to report)."""
        if header.station_key_id != self.station_key_id:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(header.kiosk_key).verify(
                header.signature, HEADER_SIGNATURE_CONTEXT + header.raw
            )
        except (InvalidSignature, ValueError):
            return False
        known = self.store.query("SELECT 1 FROM kiosks WHERE kiosk_id = ?", (header.kiosk_id,))
        return not known

    def _keep_aside(self, path: Path, data: bytes, header: SegmentHeader, expected: str | None) -> None:
        """A copy in the station home, its folder saying whether it came from an export folder
        (named by a kiosk id: verify_segment then expects an export seal)."""
        kiosk = header.kiosk_id
        name = path.name if segment_number_of(path.name) is not None else segment_name(header.number)
        digest = blake3.blake3(data).hexdigest(length=8) + (EXPORTED if expected else "")
        copy = kept_aside_folder(self.home) / kiosk / digest / name
        if not copy.exists():
            _write_durably(copy, data)
            self.summary.segments_kept_aside.append(copy)
        message = _not_enrolled_message(self.home, copy, kiosk)
        self.summary.findings.append(Finding("alarm", str(path), kiosk, header.number, None, message))
        if expected is not None and expected != kiosk:
            message = f"written by kiosk {kiosk}, not by kiosk {expected} whose folder holds it"
            self.summary.findings.append(Finding("alarm", str(path), kiosk, header.number, None, message))

    def kept_aside_copies(self) -> None:
        enrolled = set(self.store.kiosk_ids())
        for kiosk, copies in kept_aside_segments(self.home).items():
            if kiosk not in enrolled:
                continue
            for copy in copies:
                data = self.read(copy)
                exported = kiosk if copy.parent.name.endswith(EXPORTED) else None
                if data is None or not self.segment_file(copy, data, exported):
                    continue
                number = segment_number_of(copy.name)
                with self.store.transaction():
                    self.store.remove_findings(kiosk, number, [_not_enrolled_message(self.home, copy, kiosk)])
                done = (
                    kept_aside_folder(self.home) / IMPORTED / copy.relative_to(kept_aside_folder(self.home))
                )
                _move(copy, done)
                self.summary.kept_aside_imported.append(done)

    def _store_segment(self, segment: VerifiedSegment) -> bool:
        """Store what is new; False when the segment conflicts with one imported before."""
        header, db, summary = segment.header, self.store.connection, self.summary
        kiosk, now = header.kiosk_id, self.now

        def alarm(record: int | None, message: str) -> None:
            summary.findings.append(
                Finding("alarm", str(segment.path), kiosk, header.number, record, message)
            )

        enrolled = db.execute(
            "SELECT public_key, retired_from_ns FROM kiosks WHERE kiosk_id = ?", (kiosk,)
        ).fetchone()
        if enrolled is None or enrolled[0] != header.kiosk_key:
            alarm(None, "signed by a key that is not the one enrolled with this kiosk id: refused")
            return False
        retired_from: int | None = enrolled[1]
        known = db.execute(
            "SELECT header_hash FROM segments WHERE kiosk_id = ? AND number = ?", (kiosk, header.number)
        ).fetchone()
        if known is not None and known[0] != header.hash:
            alarm(
                None, "differs from the segment with this number imported before (forked or forged journal)"
            )
            return False
        if known is None:
            created: dict[str, Any] = header.created
            wrong = time_problem(created, "created")
            if wrong:
                alarm(None, f"header's time fields are not valid ({wrong}): stored without them")
                created = {}
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
        new, after_retirement = 0, []
        for record in segment.records:
            stored = db.execute(
                "SELECT chain FROM chained_records WHERE kiosk_id = ? AND segment = ? AND idx = ?",
                (kiosk, header.number, record.index),
            ).fetchone()
            if stored is not None:
                summary.records_known += 1
                if stored[0] != record.chain:
                    alarm(
                        record.index,
                        "differs from the record with this index imported before (forked journal)",
                    )
                continue
            body = record.body
            wrong = record_problem(body)
            text = None
            if wrong is None:
                try:
                    text = body_to_json(body)
                except ValueError as err:
                    wrong = f"cannot be stored as JSON: {err}"
            if wrong is not None:
                self.store.keep_record(kiosk, header.number, record.index, record.chain, wrong, body, now)
                summary.records_kept_aside += 1
                alarm(
                    record.index, f"not a valid journal record ({wrong}): kept aside, left out of the reports"
                )
                continue
            stamp = record.time
            if retired_from is not None and stamp["wall_ns"] >= retired_from:
                reason = retired_reason(retired_from)
                self.store.keep_record(kiosk, header.number, record.index, record.chain, reason, body, now)
                summary.records_kept_aside += 1
                after_retirement.append(record.index)
                continue
            kind, scan_id = body["type"], body.get("scan_id")
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kiosk,
                    header.number,
                    record.index,
                    record.chain,
                    stamp["wall_ns"],
                    stamp["monotonic_ns"],
                    stamp["boot_id"],
                    None if stamp["clock_synchronised"] is None else int(stamp["clock_synchronised"]),
                    kind,
                    scan_id,
                    text,
                ),
            )
            new += 1
        if after_retirement:
            alarm(None, retired_message(after_retirement, retired_from or 0, "refused and kept aside"))
        if new:
            summary.records_new += new
            db.execute(
                "UPDATE kiosks SET first_import_ns = COALESCE(first_import_ns, ?), last_import_ns = ?, "
                "last_record_wall_ns = (SELECT MAX(wall_ns) FROM records WHERE kiosk_id = ?) "
                "WHERE kiosk_id = ?",
                (now, now, kiosk, kiosk),
            )
        return True


def _not_enrolled_message(home: StationHome, copy: Path, kiosk: str) -> str:
    return (
        f"signed by kiosk key {kiosk}, which is not enrolled at this station: refused, kept aside as "
        f"{copy.relative_to(home.folder)} (enroll the kiosk with 'fieldtriage station kiosks add', "
        "then 'fieldtriage station import --kept-aside')"
    )


def _write_durably(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with temporary.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(target)
        fsync_folder(target.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise StationError(target, f"cannot keep a copy: {err.strerror}") from err


def _move(source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        source.replace(target)
        fsync_folder(target.parent)
        source.parent.rmdir()  # its digest folder, now empty
    except OSError as err:
        if source.exists():
            raise StationError(source, f"cannot move to {target}: {err.strerror}") from err


def _power_cut_tail(data: bytes, header: SegmentHeader, findings: list[Finding]) -> list[Finding]:
    """The findings about a segment, with what zeros at its end explain (the kiosk's tail reader
    sets such a tail aside as torn: a write whose blocks never reached the disk) made one notice."""
    kiosk_bytes = len(data)
    find_export_seal = getattr(segment_format, "find_export_seal", None)  # format 2 copies
    export = find_export_seal(memoryview(data), header.frames_offset) if find_export_seal else None
    if export is not None:
        kiosk_bytes = export.offset  # the export seal follows the kiosk's file
    if not kiosk_bytes or data[kiosk_bytes - 1] != 0:
        return findings
    written = len(data[:kiosk_bytes].rstrip(b"\0"))
    if written == kiosk_bytes:
        return findings
    boundary = written
    for frame in parse_frames(memoryview(data)[:kiosk_bytes], header.frames_offset):
        if isinstance(frame, RecordFrame | SealFrame) and frame.end <= written:
            continue
        boundary = frame.offset  # the first frame the zeros reach
        head = data[boundary:written]
        if (
            isinstance(frame, MalformedFrame)
            and head
            and not (head[:1] in (RECORD_TYPE, SEAL_TYPE) and len(head) < RECORD_HEAD.size)
        ):
            return findings  # bytes that are no frame's start before the zeros: not a power cut
        break

    def offset(finding: Finding) -> int | None:
        match = FRAME_AT.match(finding.message)
        at = int(match.group(1)) if match is not None and finding.segment == header.number else None
        return at if at is not None and at >= boundary else None

    explained = [at for at in map(offset, findings) if at is not None]
    if not explained:
        return findings
    kept = [f for f in findings if offset(f) is None]
    start = min(explained)  # a good last frame can end in zero bytes of its own
    message = (
        f"{POWER_CUT}: the last {kiosk_bytes - start} bytes from offset {start} end in "
        f"{min(kiosk_bytes - written, kiosk_bytes - start)} zero bytes (a write that never reached "
        "the disk), set aside"
    )
    kept.append(Finding("notice", findings[0].source, header.kiosk_id, header.number, None, message))
    return kept


def _link_findings(store: Store, kiosk: str, number: int) -> list[Finding]:
    """What the headers of ``number`` and ``number + 1`` say about their predecessors; the
    warnings they gave before and no longer give (what was missing arrived) are withdrawn."""
    findings: list[Finding] = []
    for later in (number, number + 1):
        fresh = _check_link(store, kiosk, later)
        still = {f.message for f in fresh if f.severity == "warning"}
        stored = store.query(
            "SELECT message FROM findings WHERE kiosk_id = ? AND segment = ? AND severity = 'warning' "
            "AND source = 'database'",
            (kiosk, later - 1),
        )
        stale = [m for (m,) in stored if m not in still and _is_missing_warning(m, later)]
        store.remove_findings(kiosk, later - 1, stale)
        findings.extend(fresh)
    return findings


def _is_missing_warning(message: str, later: int) -> bool:
    """A warning ``_check_link(later)`` gives about segment ``later - 1``."""
    if message in (
        f"segment missing (segment {later} follows it)",
        f"{UNSEALED_HERE} (segment {later} says it was sealed)",
    ):
        return True
    return bool(re.fullmatch(rf"\d+ of its \d+ records missing \(segment {later} says it had \d+\)", message))


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
        if previous_chain == bytes(CHAIN_BYTES) and not previous_records and not previous_sealed:
            # the kiosk found it holding no record, its preamble cut short while it was created
            say(
                "notice",
                number - 1,
                None,
                f"held no record: {POWER_CUT} while it was created ({previous_torn} bytes set aside, "
                f"segment {number} says)",
            )
        else:
            say("warning", number - 1, None, f"segment missing (segment {number} follows it)")
        return out
    header_hash, sealed_count, sealed_chain = before
    if not previous_sealed:
        torn = f", {previous_torn} torn bytes set aside" if previous_torn else ""
        say("notice", number - 1, None, f"was not closed (power cut or write failure){torn}")
    elif sealed_count is None:  # withdrawn once a copy with its seal arrives (_is_missing_warning)
        say("warning", number - 1, None, f"{UNSEALED_HERE} (segment {number} says it was sealed)")
    if sealed_count is not None and (sealed_count, sealed_chain) != (previous_records, previous_chain):
        say(
            "alarm",
            number,
            None,
            f"does not continue segment {number - 1} as sealed (segments from two journals)",
        )
        return out
    have = db.execute(
        "SELECT COUNT(*) FROM chained_records WHERE kiosk_id = ? AND segment = ? AND idx < ?",
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
        "SELECT chain FROM chained_records WHERE kiosk_id = ? AND segment = ? AND idx = ?",
        (kiosk, number - 1, previous_records - 1),
    ).fetchone()
    final = header_hash if previous_records == 0 else (last[0] if last else None)
    if final is not None and final != previous_chain:
        say("alarm", number, None, f"does not continue segment {number - 1} (chain differs)")
    extra = db.execute(
        "SELECT MIN(idx) FROM chained_records WHERE kiosk_id = ? AND segment = ? AND idx >= ?",
        (kiosk, number - 1, previous_records),
    ).fetchone()[0]
    if extra is not None:
        say(
            "alarm", number - 1, extra, f"lies beyond the {previous_records} records segment {number} counted"
        )
    return out
