"""Every field the station reads from a journal record, with its type and range, checked before the
record is stored.

A record is validly signed by an enrolled kiosk and still untrusted in its values: a kiosk with a
bug, or a stolen key, can sign anything CBOR holds. ``problem(body)`` says what is wrong with a
record in one line, or None: the time fields, ``type``, ``scan_id``, and per record type the fields
reports read (docs/journal-format.md, section 6; docs/report.md). Fields not listed here are
allowed and stored as they are; code that reads them must check them itself (or be listed here).
Integers anywhere must fit in 64 bits (larger ones are CBOR bignum tags, which the journal format
excludes), so that every stored body can be read back.

Example::

    >>> problem({"time": {"wall_ns": 2**64 - 1, "monotonic_ns": 0, "boot_id": "b",
    ...                   "clock_synchronised": None}, "type": "test"})
    'time.wall_ns: 18446744073709551615 is not an integer from 0 to 9223372036854775807'
    >>> problem({"time": TIME_EXAMPLE, "type": "scan", "started": "0000-01-01T00:00:00Z"})
    "started: '0000-01-01T00:00:00Z' is not an ISO 8601 time between the years 1970 and 9999"
    >>> problem({"time": TIME_EXAMPLE, "type": "scan", "scan": {"hits": [{"path": "x", "matches": 5}]}})
    'scan.hits[0].matches: 5 is not a list'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Check = Callable[[object, str], "str | None"]  # (value, where) -> what is wrong, or None

INT64_MAX = (1 << 63) - 1
CBOR_INT_MIN, CBOR_INT_MAX = -(1 << 64), (1 << 64) - 1  # major types 0 and 1
VERDICTS = ("priority_match", "match", "no_match", "incomplete")
SANE_YEARS = (1970, 9999)
TIME_EXAMPLE = {"wall_ns": 0, "monotonic_ns": 0, "boot_id": "", "clock_synchronised": None}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _say(where: str, value: object, what: str) -> str:
    return f"{where}: {_shown(value)} is not {what}"


def anything(value: object, where: str) -> str | None:
    return None


def text(value: object, where: str) -> str | None:
    return None if isinstance(value, str) else _say(where, value, "text")


def boolean(value: object, where: str) -> str | None:
    return None if isinstance(value, bool) else _say(where, value, "true or false")


def integer(low: int = 0, high: int = INT64_MAX) -> Check:
    def check(value: object, where: str) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return _say(where, value, f"an integer from {low} to {high}")

    return check


def number(value: object, where: str) -> str | None:
    """A finite number from 0 (seconds, sizes)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _say(where, value, "a number")
    if not (math.isfinite(value) and 0 <= value <= INT64_MAX):
        return _say(where, value, f"a finite number from 0 to {INT64_MAX}")
    return None


def fraction(value: object, where: str) -> str | None:
    """A probability: a finite number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        return _say(where, value, "a number from 0 to 1")
    return None


def real(value: object, where: str) -> str | None:
    return None if isinstance(value, float) else _say(where, value, "a floating-point number")


def nullable(check: Check) -> Check:
    def nullable_check(value: object, where: str) -> str | None:
        return None if value is None else check(value, where)

    return nullable_check


def either(*checks: Check) -> Check:
    def either_check(value: object, where: str) -> str | None:
        problems = [check(value, where) for check in checks]
        return None if None in problems else problems[0]

    return either_check


def choice(values: Iterable[str]) -> Check:
    allowed = tuple(values)

    def choice_check(value: object, where: str) -> str | None:
        return (
            None if value in allowed and isinstance(value, str) else _say(where, value, f"one of {allowed}")
        )

    return choice_check


def iso_time(value: object, where: str) -> str | None:
    """What ``datetime.fromisoformat`` reads, in UTC (a naive time taken as UTC) within SANE_YEARS."""
    what = f"an ISO 8601 time between the years {SANE_YEARS[0]} and {SANE_YEARS[1]}"
    if not isinstance(value, str) or len(value) > 64:
        return _say(where, value, what)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
        dt.datetime.fromtimestamp(moment.timestamp(), dt.UTC)  # what the reports do with it
    except (ValueError, OverflowError, OSError):
        return _say(where, value, what)
    return None if SANE_YEARS[0] <= moment.year <= SANE_YEARS[1] else _say(where, value, what)


def list_of(check: Check) -> Check:
    def list_check(value: object, where: str) -> str | None:
        if not isinstance(value, list):
            return _say(where, value, "a list")
        for index, item in enumerate(value):
            found = check(item, f"{where}[{index}]")
            if found:
                return found
        return None

    return list_check


def dict_of(check: Check) -> Check:
    """A map whose every value passes ``check``."""
    return mapping({}, extra=check)


def mapping(fields: Mapping[str, Check], required: Iterable[str] = (), extra: Check = anything) -> Check:
    """A map: the listed fields (when present; ``required`` ones always), other keys by ``extra``."""
    needed = tuple(required)

    def mapping_check(value: object, where: str) -> str | None:
        if not isinstance(value, dict):
            return _say(where, value, "a map")
        for name in needed:
            if name not in value:
                return f"{where}.{name}: missing"
        for key, item in value.items():
            found = fields.get(key, extra)(item, f"{where}.{key}")
            if found:
                return found
        return None

    return mapping_check


scalar = either(text, boolean, integer(-INT64_MAX - 1, INT64_MAX), real)
optional_text = nullable(text)
optional_int = nullable(integer())
optional_bool = nullable(boolean)
texts = list_of(text)

TIME = mapping(
    {
        "wall_ns": integer(),
        "monotonic_ns": integer(),
        "boot_id": text,
        "clock_synchronised": optional_bool,
        "clock_source": text,
    },
    required=("wall_ns", "monotonic_ns", "boot_id", "clock_synchronised"),
)
DEVICE = mapping(
    {
        **dict.fromkeys(
            (
                "kind",
                "phone_kind",
                "devnode",
                "devpath",
                "bus",
                "vendor",
                "model",
                "serial",
                "vendor_id",
                "model_id",
                "port_path",
                "backing_file",
            ),
            optional_text,
        ),
        "size": optional_int,
        "diskseq": nullable(either(integer(), text)),
        "removable": optional_bool,
        "rotational": optional_bool,
        "properties": dict_of(nullable(scalar)),
    }
)
FILTER_ENTRY = either(
    text,
    mapping(
        {
            **dict.fromkeys(
                ("id", "filter_id", "name", "signer", "file", "source", "provider"), optional_text
            ),
            "entries": optional_int,
        }
    ),
)
MATCH = mapping(
    {
        **dict.fromkeys(
            ("filter_id", "filter_name", "kind", "category", "priority", "digest"), optional_text
        ),
        "set": optional_int,
        "confirmed": optional_bool,
    }
)
HIT = mapping(
    {
        "path": text,
        "path_b64": text,
        "size": integer(),
        "priority": boolean,
        "confirmed": optional_bool,
        "categories": list_of(text),
        "matches": list_of(MATCH),
        "digests": dict_of(text),
    },
    required=("path",),
)
PROBLEM = mapping({"path": text, "path_b64": text, "code": text, "reason": text})
COUNTS = mapping(
    {
        **dict.fromkeys(
            (
                "directories",
                "files_seen",
                "bytes_seen",
                "files_read",
                "files_empty",
                "files_confirmed",
                "files_not_scanned",
                "bytes_read",
            ),
            integer(),
        ),
        "skipped": dict_of(integer()),
        "errors": dict_of(integer()),
    }
)
FILTER_SET = mapping(
    {
        **dict.fromkeys(("kind", "category", "priority", "role"), optional_text),
        **dict.fromkeys(("set", "entries", "item_group"), optional_int),
        "note": optional_text,
        "checked": optional_bool,
    }
)
REPORT_FILTER = mapping(
    {
        **dict.fromkeys(("filter_id", "name", "source", "signer"), optional_text),
        "fully_covered_by_samples": optional_bool,
        "sets": list_of(FILTER_SET),
    }
)
TIMINGS = mapping(
    {
        "workers": integer(),
        "started_at": text,
        **dict.fromkeys(("elapsed_s", "walk_s", "first_hit_s", "first_priority_hit_s"), nullable(number)),
    }
)
SCAN_REPORT = mapping(
    {
        "report_version": integer(),
        "verdict": choice(VERDICTS),
        "complete": boolean,
        "cancelled": boolean,
        "stopped_at_first_priority": boolean,
        "mode": text,
        "roots": list_of(mapping({"path": text, "path_b64": text})),
        "first_pass_kinds": texts,
        "filters": list_of(REPORT_FILTER),
        "counts": COUNTS,
        "hits": list_of(HIT),
        "errors": list_of(PROBLEM),
        "skipped": list_of(PROBLEM),
        "timings": TIMINGS,
        "skipped_not_listed": integer(),
        "errors_not_listed": integer(),
    }
)
PARTITION = mapping(
    {
        **dict.fromkeys(("number", "start", "size"), optional_int),
        **dict.fromkeys(
            (
                "type_id",
                "type_name",
                "name",
                "fs_type",
                "uuid",
                "label",
                "mountpoint",
                "driver",
                "options",
                "recovery",
                "problem",
            ),
            optional_text,
        ),
        "mounted": optional_bool,
        "needs_recovery": optional_bool,
        "replayed": nullable(mapping(dict.fromkeys(("mountpoint", "options", "layer"), optional_text))),
    }
)
STORAGE = mapping(
    {
        "folder": text,
        "description": text,
        **dict.fromkeys(("storage_id", "capacity", "free"), optional_int),
    }
)
BLOCK_REGION = mapping(  # a region of the device the block sample read on one grid (agent/scan/blocks.py)
    {
        "label": text,
        "partition": optional_int,
        **dict.fromkeys(("start", "size", "unit", "origin", "windows_per_unit", "units"), integer()),
        "fs": optional_text,
        "files": text,
    }
)
BLOCK_SAMPLE = mapping(  # the scan record's ``blocks``: docs/report.md, "Block sample"
    {
        **dict.fromkeys(("skipped", "stopped"), optional_text),
        **dict.fromkeys(
            (
                "target_bytes",
                "subsample",
                "block_sets",
                "items",
                "dense_items",
                "units",
                "hit_units_at_target",
                "planned",
                "sampled",
                "counted",
                "windows_looked_up",
                "blank",
                "read_errors",
                "bytes_read",
                "hits",
                "priority_hits",
                "hits_not_listed",
            ),
            integer(),
        ),
        "seed": integer(0, CBOR_INT_MAX),  # 8 random bytes: up to 2**64 - 1
        "confidence_target": fraction,
        "probability": nullable(fraction),
        **dict.fromkeys(("time_budget_s", "seconds"), number),
        "size_at_confidence": optional_int,
        **dict.fromkeys(("statement", "short"), text),
        "hits_by_set": dict_of(integer()),
        "regions": list_of(BLOCK_REGION),
    }
)
BLOCK_HIT = mapping(
    {
        "offset": integer(),
        "region": text,
        "partition": optional_int,
        **dict.fromkeys(("filter_id", "filter_name", "category", "priority", "digest"), optional_text),
        "set": optional_int,
    },
    required=("offset",),
)
SCAN_FIELDS: dict[str, Check] = {
    "bay": optional_text,
    "device": DEVICE,
    "filters": list_of(FILTER_ENTRY),
    "mode": text,
    "started": nullable(iso_time),
    "finished": nullable(iso_time),
    "seconds": number,
    "verdict": choice(VERDICTS),
    "removed_early": boolean,
    "lights_shown": texts,
    "lights": texts,
    "notes": texts,
    "partitions": list_of(PARTITION),
    "partition_table": optional_text,
    "storages": list_of(STORAGE),
    "device_problems": texts,
    "cleanup_problems": texts,
    "scan": nullable(SCAN_REPORT),
    "report": nullable(SCAN_REPORT),
    "blocks": nullable(BLOCK_SAMPLE),
    "block_hits": list_of(BLOCK_HIT),
    "statement": text,
}
BY_TYPE: dict[str, Check] = {
    "scan": mapping(SCAN_FIELDS),
    "scan_started": mapping(SCAN_FIELDS),
    "scan_finished": mapping(SCAN_FIELDS),
    "lights": mapping({"shown": nullable(text)}),
    "filters": mapping({"filters": list_of(FILTER_ENTRY), "problems": texts}),
    "not_scanned": mapping({"device": DEVICE, "reason": text, "bay": optional_text}),
    "sync": mapping(
        {
            **dict.fromkeys(("token_id", "fs_uuid", "error"), text),
            "partition": integer(),
            "token_created": integer(),
            **dict.fromkeys(
                ("segments_copied", "filters_taken", "trust_keys_taken", "refused", "lights_shown"), texts
            ),
        }
    ),
    "phone_state": mapping(
        {
            "bay": optional_text,
            "device": DEVICE,
            **dict.fromkeys(("state", "message", "reason"), text),
            "storages": list_of(STORAGE),
            "at": iso_time,
        }
    ),
    "journal_recovered": mapping({"after": optional_text}),
}
KIOSK = mapping({"name": text, "location": text})  # the kiosk's own words for itself (agent.toml [kiosk])
RECORD = mapping({"time": TIME, "kiosk": KIOSK, "type": text, "scan_id": text}, required=("time", "type"))


def problem(body: Mapping[str, Any]) -> str | None:
    """What is wrong with a record body (its time fields under ``time``), in one line; None if nothing."""
    found = _wide_integer(body, "record", 0) or RECORD(dict(body), "record")
    if found:
        return found.removeprefix("record.")
    check = BY_TYPE.get(str(body.get("type")))
    found = check(dict(body), "record") if check else None
    return found.removeprefix("record.") if found else None


def time_problem(stamp: object, where: str = "time") -> str | None:
    """What is wrong with a map of time fields (a record's, or a segment header's ``created``)."""
    return _wide_integer(stamp, where, 0) or TIME(stamp, where)


def _wide_integer(value: object, where: str, depth: int) -> str | None:
    """An integer beyond 64 bits anywhere (JSON cannot hold the largest; no field needs them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        ok = CBOR_INT_MIN <= value <= CBOR_INT_MAX
        return None if ok else f"{where}: an integer of {value.bit_length()} bits (more than 64)"
    if depth > 64:
        return f"{where}: nested too deep"
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _wide_integer(
            item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]", depth + 1
        )
        if found:
            return found
    return None
