"""What a journal record may hold, and the time fields the journal adds to each one.

A record is a mapping with text keys whose values are text, integers, floats, booleans, None,
bytes, lists (or tuples) and mappings of the same, at most ``MAX_DEPTH`` deep. The key ``time`` is
the journal's: it holds the wall clock, the monotonic clock, the boot id and whether the clock was
synchronised (see ``agent.journal.clock``). So is ``kiosk``: the kiosk's configured name and
location (``[kiosk]`` in agent.toml), in every record when either is set (``with_header``), so that
every record the station reads says which kiosk, and where, wrote it.

Record types the station understands (docs/journal-format.md, section 6) are built here, so the
daemon and the station agree on field names.

Example::

    >>> normalised({"type": "lights", "shown": ("red",), "raw": bytearray(b"x")})
    {'type': 'lights', 'shown': ['red'], 'raw': b'x'}
    >>> with_header({"type": "x"}, {"wall_ns": 1}, kiosk_header("Bay 2", ""))
    {'time': {'wall_ns': 1}, 'kiosk': {'name': 'Bay 2', 'location': ''}, 'type': 'x'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

from agent.journal.segment_format import MAX_SEALED_BYTES, TAG_BYTES
from filters.errors import JournalError

MAX_DEPTH = 16
RESERVED_KEY = "time"
KIOSK_KEY = "kiosk"  # the kiosk's name and location, added by the journal like the time fields
# what a record's own fields may take: the journal adds its time fields and the AEAD tag
RECORD_BYTES = MAX_SEALED_BYTES - TAG_BYTES - (4 << 10)
CUT_LISTS = ("skipped", "errors")  # never "hits": a find is always listed


def normalised(record: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of ``record`` (tuples to lists, bytes-likes to bytes); JournalError otherwise."""
    if not isinstance(record, Mapping):
        raise JournalError("record", f"is a {type(record).__name__}, not a mapping")
    if RESERVED_KEY in record:
        raise JournalError("record", f"field {RESERVED_KEY!r} is reserved for the journal's time fields")
    if KIOSK_KEY in record:
        raise JournalError("record", f"field {KIOSK_KEY!r} is reserved for the kiosk's name and location")
    value = plain_value(record, "record", 0)
    assert isinstance(value, dict)
    return value


def plain_value(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain data (see the module docstring); JournalError naming ``where`` otherwise."""
    if depth > MAX_DEPTH:
        raise JournalError(where, f"nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise JournalError(where, f"key {key!r} is not text")
            out[key] = plain_value(item, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [plain_value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise JournalError(where, f"unsupported value type {type(value).__name__}")


def kiosk_header(name: str, location: str) -> dict[str, str] | None:
    """The ``kiosk`` field of every record: ``{"name", "location"}`` ("" for the one not set), or
    None when neither is configured (then records carry no such field)."""
    return {"name": name, "location": location} if name or location else None


def with_header(
    body: Mapping[str, Any], time_fields: Mapping[str, Any], kiosk: Mapping[str, str] | None
) -> dict[str, Any]:
    """A record as the journal writes it: its time fields, the kiosk's name and location (if
    configured), then ``body`` (already ``normalised``, so it holds neither key)."""
    return {RESERVED_KEY: dict(time_fields), **({KIOSK_KEY: dict(kiosk)} if kiosk else {}), **body}


def alarm_silenced_record(
    bay: str, signal: str, at: str, button: str, device: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The acknowledge button silenced a bay's ``signal`` (a priority alarm, a match's beeps) at
    ``at`` (ISO 8601 UTC); ``button`` is ``bay`` (the bay's own) or ``kiosk`` (lights.button);
    ``device`` the identity of the device the bay holds, if any. The lights stayed as they were."""
    return {
        "type": "alarm_silenced",
        "bay": bay,
        "signal": signal,
        "at": at,
        "button": button,
        "device": None if device is None else dict(device),
    }


def scan_started_record(
    scan_id: str, device: Mapping[str, Any], filter_ids: Sequence[str], mode: str
) -> dict[str, Any]:
    """The record a daemon appends when a scan starts (an interrupted scan still shows up)."""
    return {
        "type": "scan_started",
        "scan_id": scan_id,
        "device": dict(device),
        "filters": list(filter_ids),
        "mode": mode,
    }


def scan_finished_record(scan_id: str, report: Mapping[str, Any], lights: Sequence[str]) -> dict[str, Any]:
    """``report`` is ``ScanReport.to_json()`` (verdict, hits, errors, skipped...); ``lights`` what the
    indicator showed, in order."""
    return {"type": "scan_finished", "scan_id": scan_id, "report": dict(report), "lights": list(lights)}


def lights_record(shown: str, scan_id: str | None = None) -> dict[str, Any]:
    return {"type": "lights", "shown": shown, "scan_id": scan_id}


def filters_record(filters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The filters the kiosk carries now (at start, and after every change): id, name, expiry..."""
    return {"type": "filters", "filters": [dict(f) for f in filters]}


def fitted_scan_record(record: dict[str, Any], limit: int = RECORD_BYTES) -> dict[str, Any]:
    """``record`` (a ``scan`` record) as it fits in one journal record. A device can list more
    entries than fit (60,000 symbolic links make 12 MiB): then the scan report's ``skipped`` and,
    if need be, ``errors`` lists are cut from the end (sorted by path; their counts by code stay
    in ``counts``), and ``skipped_not_listed`` / ``errors_not_listed`` say how many were left out.
    Hits are never cut: a record that is too large with its hits alone stays too large.

    >>> record = {"type": "scan", "scan": {"skipped": [{"path": "x" * 100}] * 100, "errors": []}}
    >>> fitted = fitted_scan_record(record, limit=5000)
    >>> len(fitted["scan"]["skipped"]), fitted["scan"]["skipped_not_listed"], len(cbor2.dumps(fitted)) <= 5000
    (45, 55, True)
    """
    excess = len(cbor2.dumps(record)) - limit
    scan = record.get("scan")
    if excess <= 0 or not isinstance(scan, dict):
        return record
    scan = dict(scan)
    for key in CUT_LISTS:
        items = scan.get(key)
        if excess <= 0 or not isinstance(items, list) or not items:
            continue
        kept = len(items)
        while kept and excess > 0:
            kept -= 1
            excess -= len(cbor2.dumps(items[kept]))
        scan[key], scan[f"{key}_not_listed"] = items[:kept], len(items) - kept
        excess += 16  # the new count and the shorter list header
    return {**record, "scan": scan}
