"""``fieldtriage station kiosks``: the kiosks enrolled at this station, their names, when each last
synced, which filters each carries; enrolling one from its enrollment file, retiring one.

Only an enrolled kiosk's journal is imported (``station.importer``). A kiosk is enrolled from the
``enrollment.json`` that ``fieldtriage agent provision`` wrote on it (agent/daemon/provision.py),
with a human name ("Phnom Penh CPU bay 2") and a location. Retiring a kiosk revokes its key from a
date: records dated from then on are refused (kept aside, with an alarm), earlier ones still import.
"Filters carried" comes from the newest record that lists filters: a ``filters`` record, or else a
scan record (docs/journal-format.md, section 6). Wherever the station names a kiosk it uses
``kiosk_label``.

Example::

    >>> from station.store import Store
    >>> store = Store.open(":memory:")
    >>> kiosk_overview(store), kiosk_label(store, "ab" * 16)
    ([], 'kiosk abababab (not enrolled)')
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from agent.journal.keys import raw_public
from agent.journal.segment_format import key_id_of_raw
from filters.errors import StationError, printable
from filters.safe_files import read_regular_file
from station.findings import Finding, index_ranges
from station.record_schema import iso_time
from station.scans import iso_ns
from station.store import Store, body_from_json

ENROLLMENT_FORMAT = "fieldtriage-kiosk-enrollment-1"  # agent/daemon/provision.py FORMAT
ENROLLMENT_FIELDS = {"format", "kiosk_id", "public_key", "hostname", "created", "agent", "name", "location"}
ENROLLMENT_REQUIRED = ("format", "kiosk_id", "public_key", "hostname", "created")
MAX_ENROLLMENT_BYTES = 64 << 10
KIOSK_ID = re.compile(r"^[0-9a-f]{32}$")
PEM_BEGIN, PEM_END = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
MAX_NAME = 200


@dataclass(frozen=True)
class Enrollment:
    """What a kiosk's enrollment file says, checked: the id is its key's."""

    kiosk_id: str
    public_key: bytes  # raw Ed25519
    hostname: str
    created: str
    agent: str


@dataclass
class KioskSummary:
    kiosk_id: str
    name: str
    location: str
    hostname: str
    provisioned: str
    enrolled: str | None
    retired_from: str | None
    retired: str | None
    first_import: str | None
    last_import: str | None
    newest_record: str | None
    segments: int
    records: int
    kept_aside: int
    alarms: int
    filters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return _label(self.kiosk_id, self.name)

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "label": self.label}


def read_enrollment(path: Path) -> Enrollment:
    """The enrollment file at ``path``; StationError naming the file and the field otherwise."""
    data = read_regular_file(path, MAX_ENROLLMENT_BYTES, StationError, "an enrollment file")

    def refuse(reason: str) -> StationError:
        return StationError(path, reason)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise refuse(f"field {key!r} appears twice")
            seen[key] = value
        return seen

    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=unique)
    except UnicodeDecodeError as err:
        raise refuse("not UTF-8 text: not an enrollment file") from err
    except json.JSONDecodeError as err:
        raise refuse(f"not JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    if not isinstance(document, dict):
        raise refuse("not a JSON object: not an enrollment file")
    if document.get("format") != ENROLLMENT_FORMAT:
        raise refuse(f"field 'format': {_shown(document.get('format'))}, expected {ENROLLMENT_FORMAT!r}")
    unknown = sorted(set(document) - ENROLLMENT_FIELDS)
    if unknown:
        raise refuse(f"field {_shown(unknown[0])}: not part of {ENROLLMENT_FORMAT}")
    for name in ENROLLMENT_REQUIRED:
        if name not in document:
            raise refuse(f"field {name!r}: missing")
    for name in ENROLLMENT_FIELDS & set(document):
        if not isinstance(document[name], str):
            raise refuse(f"field {name!r}: {_shown(document[name])} is not text")
    kiosk_id, pem = document["kiosk_id"], document["public_key"]
    if not KIOSK_ID.match(kiosk_id):
        raise refuse(f"field 'kiosk_id': {_shown(kiosk_id)} is not 32 lower-case hex digits")
    if not (pem.strip().startswith(PEM_BEGIN) and pem.strip().endswith(PEM_END)):
        raise refuse("field 'public_key': not one PEM public key (BEGIN/END PUBLIC KEY)")
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as err:
        raise refuse("field 'public_key': not a PEM public key that can be read") from err
    if not isinstance(key, Ed25519PublicKey):
        raise refuse("field 'public_key': not an Ed25519 public key (a kiosk's device key is Ed25519)")
    raw = raw_public(key)
    actual = key_id_of_raw(raw).hex()
    if actual != kiosk_id:
        raise refuse(f"field 'kiosk_id': {kiosk_id} is not the key id of public_key ({actual})")
    hostname = document["hostname"]
    if not 0 < len(hostname) <= 253 or printable(hostname) != hostname:
        raise refuse(f"field 'hostname': {_shown(hostname)} is not a host name")
    if iso_time(document["created"], "created"):
        raise refuse(f"field 'created': {_shown(document['created'])} is not an ISO 8601 time")
    agent = document.get("agent", "")
    if len(agent) > 128 or printable(agent) != agent:
        raise refuse(f"field 'agent': {_shown(agent)} is not a version line")
    return Enrollment(kiosk_id, raw, hostname, document["created"], agent)


def enroll_kiosk(store: Store, enrollment: Enrollment, name: str, location: str = "") -> None:
    """Register the kiosk; StationError when its key or name is taken, or it was retired."""
    name, location = _checked_text("--name", name, required=True), _checked_text("--location", location)
    with store.transaction() as db:
        known = db.execute(
            "SELECT public_key, name, provisioned, enrolled_ns, retired_from_ns FROM kiosks "
            "WHERE kiosk_id = ?",
            (enrollment.kiosk_id,),
        ).fetchone()
        clash = db.execute(
            "SELECT kiosk_id FROM kiosks WHERE name = ? AND kiosk_id != ?", (name, enrollment.kiosk_id)
        ).fetchone()
        if clash:
            raise StationError(name, f"already the name of kiosk {clash[0]}: kiosk names are unique")
        if known is None:
            db.execute(
                "INSERT INTO kiosks VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL)",
                (
                    enrollment.kiosk_id,
                    enrollment.public_key,
                    name,
                    location,
                    enrollment.hostname,
                    enrollment.created,
                    time.time_ns(),
                ),
            )
            return
        key, known_name, provisioned, enrolled, retired_from = known
        if key != enrollment.public_key:
            raise StationError(enrollment.kiosk_id, "another key is enrolled with this id")
        if retired_from is not None:
            raise StationError(
                enrollment.kiosk_id,
                f"retired from {iso_ns(retired_from)}: a retired key is not enrolled again "
                "(provision the kiosk with a new key)",
            )
        if provisioned:
            raise StationError(
                enrollment.kiosk_id, f"already enrolled as {known_name!r} on {iso_ns(enrolled)}"
            )
        # registered at a first import by a station before enrollment (schema 1): named now
        db.execute(
            "UPDATE kiosks SET name = ?, location = ?, hostname = ?, provisioned = ? WHERE kiosk_id = ?",
            (name, location, enrollment.hostname, enrollment.created, enrollment.kiosk_id),
        )


def resolve_kiosk(store: Store, wanted: str) -> str:
    """The id of the kiosk ``wanted`` names: its name, its id, or the start of its id."""
    rows = store.query("SELECT kiosk_id, name FROM kiosks ORDER BY kiosk_id")
    by_name = [k for k, name in rows if name and name.casefold() == wanted.casefold()]
    by_id = [k for k, _ in rows if len(wanted) >= 4 and k.startswith(wanted.lower())]
    found = by_name or by_id
    if not found:
        raise StationError(
            wanted, "no enrolled kiosk has this name or id ('fieldtriage station kiosks' lists them)"
        )
    if len(found) > 1:
        raise StationError(wanted, f"{len(found)} kiosks have an id starting so: give more of it")
    return str(found[0])


def retire_kiosk(store: Store, kiosk_id: str, from_ns: int) -> int:
    """Revoke the kiosk's key from ``from_ns``: records dated from then on, already imported or
    not, are kept aside with an alarm. How many imported ones were taken out of the reports."""
    now = time.time_ns()
    with store.transaction() as db:
        retired = db.execute("SELECT retired_from_ns FROM kiosks WHERE kiosk_id = ?", (kiosk_id,)).fetchone()
        if retired is None:
            raise StationError(kiosk_id, "not an enrolled kiosk")
        if retired[0] is not None and retired[0] <= from_ns:
            raise StationError(
                kiosk_id,
                f"already retired from {iso_ns(retired[0])} (a retirement can only be moved earlier)",
            )
        db.execute(
            "UPDATE kiosks SET retired_from_ns = ?, retired_ns = ? WHERE kiosk_id = ?",
            (from_ns, now, kiosk_id),
        )
        rows = db.execute(
            "SELECT segment, idx, chain, body FROM records WHERE kiosk_id = ? AND wall_ns >= ? "
            "ORDER BY segment, idx",
            (kiosk_id, from_ns),
        ).fetchall()
        by_segment: dict[int, list[int]] = {}
        for segment, index, chain, body in rows:
            db.execute(
                "INSERT OR IGNORE INTO kept_records VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    kiosk_id,
                    segment,
                    index,
                    chain,
                    retired_reason(from_ns),
                    cbor2.dumps(body_from_json(body)),
                    now,
                ),
            )
            db.execute(
                "DELETE FROM records WHERE kiosk_id = ? AND segment = ? AND idx = ?",
                (kiosk_id, segment, index),
            )
            by_segment.setdefault(segment, []).append(index)
        for segment, indexes in by_segment.items():
            message = retired_message(indexes, from_ns, "taken out of the reports and kept aside")
            store.add_finding(Finding("alarm", "database", kiosk_id, segment, None, message), now)
    return len(rows)


def retired_reason(from_ns: int) -> str:
    return f"dated after its kiosk was retired (from {iso_ns(from_ns)})"


def retired_message(indexes: list[int], from_ns: int, done: str) -> str:
    what = f"record {indexes[0]} is" if len(indexes) == 1 else f"records {index_ranges(indexes)} are"
    return f"{what} dated after this kiosk was retired (from {iso_ns(from_ns)}): {done}"


def kiosk_label(store: Store, kiosk_id: str) -> str:
    """How the station names a kiosk to a person: the name it was enrolled with, else its id."""
    rows = store.query("SELECT name FROM kiosks WHERE kiosk_id = ?", (kiosk_id,))
    if not rows:
        return printable(f"kiosk {kiosk_id[:8]} (not enrolled)")
    return _label(kiosk_id, rows[0][0])


def kiosk_labels(store: Store) -> dict[str, str]:
    """``kiosk_label`` of every enrolled kiosk, by id."""
    return {k: _label(k, name) for k, name in store.query("SELECT kiosk_id, name FROM kiosks")}


def _label(kiosk_id: str, name: str | None) -> str:
    return printable(name) if name else f"kiosk {kiosk_id[:8]}"


def kiosk_overview(store: Store) -> list[KioskSummary]:
    out = []
    for row in store.query(
        "SELECT kiosk_id, name, location, hostname, provisioned, enrolled_ns, retired_from_ns, retired_ns, "
        "first_import_ns, last_import_ns, last_record_wall_ns FROM kiosks ORDER BY name, kiosk_id"
    ):
        (
            kiosk_id,
            name,
            location,
            hostname,
            provisioned,
            enrolled,
            retired_from,
            retired,
            first,
            last,
            newest,
        ) = row

        def count(sql: str, kiosk_id: str = kiosk_id) -> int:
            return int(store.query(sql, (kiosk_id,))[0][0])

        latest = store.query(
            "SELECT body FROM records WHERE kiosk_id = ? AND type IN ('filters', 'scan', 'scan_started') "
            "ORDER BY segment DESC, idx DESC LIMIT 1",
            (kiosk_id,),
        )
        filters = body_from_json(latest[0][0]).get("filters", []) if latest else []
        out.append(
            KioskSummary(
                kiosk_id,
                name,
                location,
                hostname,
                provisioned,
                iso_ns(enrolled),
                iso_ns(retired_from),
                iso_ns(retired),
                iso_ns(first),
                iso_ns(last),
                iso_ns(newest),
                count("SELECT COUNT(*) FROM segments WHERE kiosk_id = ?"),
                count("SELECT COUNT(*) FROM records WHERE kiosk_id = ?"),
                count("SELECT COUNT(*) FROM kept_records WHERE kiosk_id = ?"),
                count("SELECT COUNT(*) FROM findings WHERE kiosk_id = ? AND severity = 'alarm'"),
                [f if isinstance(f, dict) else {"filter_id": str(f)} for f in filters],
            )
        )
    return out


def _checked_text(option: str, value: str, *, required: bool = False) -> str:
    """One line of text (shown escaped wherever it is shown: ``kiosk_label``)."""
    value = value.strip()
    if required and not value:
        raise StationError(option, "must not be empty")
    if len(value) > MAX_NAME or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise StationError(option, f"one line of at most {MAX_NAME} characters, no control characters")
    return value


def _shown(value: object) -> str:
    text = printable(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."
