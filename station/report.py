"""``fieldtriage station report``: scans as HTML pages an analyst can put in a case file, CSV or JSON.

HTML: ``index.html`` (every scan), ``kiosks.html`` (scans per kiosk, verdict counts, last sync,
filters carried, alarms) and one page per scan, rendered from the Jinja2 templates in
``station/templates/`` with autoescaping. A scan page reads, in order: the summary (verdict in the
words the lights use, the device, kiosk and bay, exhibit and officer, times, the clock), what was
checked, the block sample (``station.blocks_view``), the filters used, the hits and the known blocks
found. docs/report.md ("The station's pages") describes them.

Everything shown comes from seized media or from a journal record and is hostile: this module turns
every value into words or numbers first (``text``: never a raw ``True``, dict or verdict code; never
an exception for a value of the wrong type), and the templates' ``finalize`` makes each value
printable (control characters, bidi overrides and zero-width characters escaped,
``filters.errors.printable``) before Jinja2 escapes it. Pages forbid scripts, images and any
request with a Content-Security-Policy. No file content, ever: the journal holds none.

CSV cells that a spreadsheet would run as a formula (also behind leading spaces) get an apostrophe.

Example::

    >>> cell("=HYPERLINK(1)"), cell(" \\u00a0@SUM(A1)"), text(True), text({"a": [1, None]})
    ("'=HYPERLINK(1)", "' \\xa0@SUM(A1)", 'yes', 'a: 1')
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import jinja2

from filters.errors import FieldtriageError, StationError, printable
from station import kiosks as kiosks_module
from station.blocks_view import block_sample_view
from station.clock_estimate import ClockEstimate, KioskClock, kiosk_clocks
from station.kiosks import KioskSummary, kiosk_overview
from station.page_words import (
    PRIORITY_WORDS,
    Fact,
    cut,
    duration_text,
    iso_text,
    number,
    path_of,
    size_text,
    span_text,
    text,
    time_text,
    words,
)
from station.review import NOT_REVIEWED, HitKey, Review, review_history
from station.scans import Scan
from station.store import Store, body_from_json

CSV_COLUMNS = (
    "kiosk",
    "kiosk_name",
    "scan_id",
    "started",
    "finished",
    "clock_synchronised",
    "device",
    "mode",
    "verdict",
    "hits",
    "priority_hits",
    "block_hits",
    "errors",
    "skipped",
    "lights",
    "reviews",
)

VERDICT_WORDS = {
    "priority_match": "priority match",
    "match": "match",
    "no_match": "no match",
    "incomplete": "could not check",
    "interrupted": "interrupted",
}
VERDICT_MEANING = {
    "priority_match": "A file matched a set of priority class.",
    "match": "Files matched, only in sets of the other class.",
    "no_match": "Every file was read against the filters and nothing matched.",
    "incomplete": (
        "Nothing matched, but something was not read or not checked: see “What could not be checked”."
    ),
    "interrupted": (
        "The kiosk journaled the start of this scan and no verdict (the kiosk stopped or lost power)."
    ),
}
# a "no match" of a device with no regular file at all: green all the same, said so the analyst sees it
EMPTY_WORDS = "empty (0 files)"
EMPTY_MEANING = (
    "No regular file was found on the device: empty (0 files). Nothing was there to match, so the "
    "verdict is no match."
)
VERDICT_CLASS = {
    "priority_match": "v-priority",
    "match": "v-match",
    "no_match": "v-clean",
    "incomplete": "v-unchecked",
    "interrupted": "v-unchecked",
}
SIGNAL_WORDS = {
    "off": "off",
    "ready": "ready",
    "scanning": "scanning",
    "scanning_priority_hit": "scanning, priority hit found",
    "priority_match": "priority match",
    "priority_match_unrecorded": "priority match, not journaled",
    "match": "match",
    "no_match": "no match",
    "could_not_check": "could not check",
    "fault": "fault",
    "phone_unlock": "phone locked or charging only",
    "phone_trust": "iPhone not trusted",
    "sync": "sync stick in use",
    "sync_done": "sync done",
    # the station's own tests and older kiosks
    "busy": "scanning",
    "red": "priority match",
    "amber": "match",
    "green": "no match",
}
MODE_WORDS = {
    "auto": "auto: sample digests of every file, whole files read to confirm a sample hit",
    "quick": "quick: sample digests only (sets no sample set covers are checked against nothing)",
    "full": "full: every digest of every file, in one read",
}
ROLE_WORDS = {
    "consulted": "looked up for every file",
    "confirm_only": "looked up to confirm sample hits",
    "skipped": "not looked up",
}
DIGEST_LABELS = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha256": "SHA-256",
    "blake3": "BLAKE3",
    "sample": "sample digest",
    "photodna": "PhotoDNA",
}
DIGEST_ORDER = ("md5", "sha1", "sha256", "blake3", "sample")
TABLE_WORDS = {"mbr": "MBR", "gpt": "GPT", "none": "none (the whole device is one volume)"}
PHONE_WORDS = {
    "mtp": "phone (MTP)",
    "ptp": "phone or camera (PTP)",
    "apple": "iPhone or iPad",
    "charge_only": "phone showing no data interface (charging only)",
}
DRIVER_WORDS = {"kernel": "kernel driver", "fuse": "FUSE driver"}
LAYER_WORDS = {"xmount": "xmount copy-on-write layer", "dm-snapshot": "device-mapper snapshot"}
CODE_WORDS = {
    "EACCES": "permission denied",
    "EPERM": "not permitted",
    "EIO": "read error",
    "ENOENT": "vanished",
    "changed": "changed while read",
    "internal": "internal error",
    "symlink": "symbolic link",
    "fifo": "named pipe",
    "socket": "socket",
    "char_device": "character device",
    "block_device": "block device",
    "loop": "folder seen before (loop)",
    "changed_type": "changed type",
    "list_failed": "folder not listed",
    "vanished": "vanished",
    "no_details": "no details from the phone",
    "bad_name": "impossible name",
    "too_deep": "too deep",
    "phone_gone": "phone gone",
    "device": "device",
    "excluded": "excluded: a reviewed false positive",
}
FIRST_PASS_WORDS = {"sample": "sample digest (three 4 KiB blocks per file)"}
CONTENT_POLICY = (
    "This page lists the paths and digests of files that matched filters of known child sexual "
    "abuse material. It holds no picture, thumbnail or content of any file. Handle, store and share "
    "it as your unit's policy for such material requires."
)
REVIEW_CLASS = {"confirmed": "r-confirmed", "false_positive": "r-false", "needs_review": "r-open"}
CLOCK_WORDS = {
    "synchronised": "synchronised",
    "not_synchronised": "not synchronised: the kiosk's times may be wrong",
    "unknown": "unknown: the kiosk could not tell whether its clock was synchronised",
}


def cell(value: object) -> str:
    """A CSV cell a spreadsheet never runs as a formula (also behind spaces or a no-break space)."""
    shown = printable("" if value is None else str(value))
    stripped = shown.lstrip()
    if shown[:1] in ("\t", "\r") or stripped[:1] in ("=", "+", "-", "@"):
        return "'" + shown
    return shown


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Printed(str):
    """Text that is printable already (``station.kiosks.kiosk_label``): shown without escaping
    its backslashes again (still HTML-escaped)."""

    __slots__ = ()


# -- the records behind a scan --------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    segment: int
    index: int
    wall_ns: int | None
    monotonic_ns: int | None
    boot_id: str | None
    synchronised: bool | None
    kind: str | None
    body: dict[str, Any]


def scan_records(store: Store, scan: Scan) -> list[StoredRecord]:
    """The stored records ``station.scans`` folded into ``scan``: those with its ``scan_id``, or the
    daemon's one ``scan`` record named ``SEGMENT.INDEX``."""
    columns = "segment, idx, wall_ns, monotonic_ns, boot_id, clock_synchronised, type, body"
    rows = store.query(
        f"SELECT {columns} FROM records WHERE kiosk_id = ? AND scan_id = ? ORDER BY segment, idx",
        (scan.kiosk, scan.scan_id),
    )
    segment, _, index = scan.scan_id.partition(".")
    if segment.isdigit() and index.isdigit():
        rows += store.query(
            f"SELECT {columns} FROM records WHERE kiosk_id = ? AND segment = ? AND idx = ? "
            "AND scan_id IS NULL AND type = 'scan'",
            (scan.kiosk, int(segment), int(index)),
        )
    out = []
    for seg, idx, wall, mono, boot, synced, kind, body_text in sorted(rows, key=lambda r: (r[0], r[1])):
        try:
            body = body_from_json(body_text) if isinstance(body_text, str) else {}
        except ValueError:
            body = {}
        out.append(
            StoredRecord(
                seg,
                idx,
                _int(wall),
                _int(mono),
                boot if isinstance(boot, str) else None,
                None if synced is None else bool(synced),
                kind if isinstance(kind, str) else None,
                body,
            )
        )
    return out


# -- what the pages show --------------------------------------------------------------------------


@dataclass
class ReportContext:
    """What every page needs besides the scans: kiosk names, clocks, review states."""

    store: Store | None = None
    names: dict[str, str] = field(default_factory=dict)
    clocks: dict[str, KioskClock] = field(default_factory=dict)
    reviews: dict[HitKey, list[Review]] = field(default_factory=dict)  # every review of a hit, oldest first
    kiosks: dict[str, KioskSummary] = field(default_factory=dict)
    exhibits: dict[str, str] = field(default_factory=dict)  # by scan key
    generated_ns: int = 0

    def kiosk_name(self, kiosk_id: str) -> str:
        if kiosk_id not in self.names:
            self.names[kiosk_id] = _kiosk_label(self.store, kiosk_id)
        return self.names[kiosk_id]


def _kiosk_label(store: Store | None, kiosk_id: str) -> str:
    """The kiosk's human name (``station.kiosks.kiosk_label`` once enrollment gives one), else its id."""
    label: Callable[[Store, str], object] | None = getattr(kiosks_module, "kiosk_label", None)
    if store is not None and callable(label):
        try:
            name = label(store, kiosk_id)
        except FieldtriageError:
            name = None
        if isinstance(name, str) and name.strip():
            name = cut(name, 300)
            # a label made printable already: printable() would only double its backslashes again
            safe = printable(name) == name.replace("\\", "\\\\")
            return Printed(name if safe else printable(name))
    return kiosk_id


def page_name(scan: Scan) -> str:
    return f"scan-{blake3.blake3(scan.key.encode('utf-8')).hexdigest(length=8)}.html"


def is_empty(verdict: object, counts: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> bool:
    """A "no match" with no regular file found: the kiosk's ``empty`` (in its scan record) or, for
    a kiosk that does not journal it, the report's ``files_seen`` of 0."""
    if verdict != "no_match":
        return False
    if record is not None and isinstance(record.get("empty"), bool):
        return bool(record["empty"])
    files = counts.get("files_seen")
    return isinstance(files, int) and not isinstance(files, bool) and files == 0


def verdict_view(verdict: object, empty: bool = False) -> dict[str, str]:
    """The verdict in words; ``note``: "empty (0 files)" for a no match of an empty device."""
    code = verdict if isinstance(verdict, str) else ""
    if code == "no_match" and empty:
        return {
            "words": VERDICT_WORDS[code],
            "meaning": EMPTY_MEANING,
            "css": VERDICT_CLASS[code],
            "note": EMPTY_WORDS,
        }
    if code in VERDICT_WORDS:
        return {
            "words": VERDICT_WORDS[code],
            "meaning": VERDICT_MEANING[code],
            "css": VERDICT_CLASS[code],
            "note": "",
        }
    return {
        "words": "unknown",
        "meaning": f"The journal holds a verdict the station does not know: “{text(verdict, 200)}”.",
        "css": "v-unchecked",
        "note": "",
    }


def device_label(device: Mapping[str, Any]) -> str:
    """Maker and model, or what is known of an unidentified device."""
    name = " ".join(text(device.get(k), 200) for k in ("vendor", "model") if text(device.get(k), 200))
    if name:
        return name
    kind = device.get("kind")
    return "unidentified phone" if kind == "phone" else "unidentified device"


def device_facts(device: Mapping[str, Any], record: Mapping[str, Any]) -> list[Fact]:
    phone = device.get("kind") == "phone"
    facts = [Fact("Device", device_label(device))]
    if phone:
        facts.append(Fact("Kind", words(PHONE_WORDS, device.get("phone_kind"), "phone")))
    facts.append(
        Fact("Maker" if phone else "Vendor", text(device.get("vendor"), 300) or "not given by the device")
    )
    facts.append(Fact("Model", text(device.get("model"), 300) or "not given by the device"))
    facts.append(Fact("Serial", text(device.get("serial"), 300) or "not given by the device", mono=True))
    usb_ids = [text(device.get(k), 20) for k in ("vendor_id", "model_id")]
    if all(usb_ids):
        facts.append(Fact("USB vendor and product", ":".join(usb_ids), mono=True))
    if text(device.get("port_path")):
        facts.append(Fact("USB port", text(device.get("port_path"), 300), mono=True))
    size = device.get("size")
    if not phone and size not in (None, 0):
        facts.append(Fact("Size", size_text(size)))
    if phone:
        storages = [_storage_line(s) for s in _dicts(record.get("storages"))]
        facts.append(Fact("Storages", "; ".join(storages) if storages else "none shown by the phone"))
    return facts


def _storage_line(storage: Mapping[str, Any]) -> str:
    name = text(storage.get("description"), 300) or "storage without a name"
    sizes = []
    if _int(storage.get("capacity")):
        sizes.append(size_text(storage.get("capacity")).split(" (")[0])
    if _int(storage.get("free")) is not None and storage.get("capacity"):
        sizes.append(f"{size_text(storage.get('free')).split(' (')[0]} free")
    return f"{name} ({', '.join(sizes)})" if sizes else name


def clock_view(scan: Scan, estimate: ClockEstimate) -> dict[str, Any]:
    """The clock's state in words and, when it was not synchronised, the station's estimate."""
    view: dict[str, Any] = {"state": CLOCK_WORDS[estimate.state], "warning": estimate.state != "synchronised"}
    if not view["warning"]:
        return view
    started = scan.started_ns
    lines: list[str] = []
    offset = estimate.offset_ns()
    if estimate.method == "same_boot" and offset is not None:
        view["estimate"] = f"about {time_text(started + offset)}" if started is not None else ""
        lines.append(
            f"From a record of the same boot of the kiosk written with a synchronised clock "
            f"(at {time_text(estimate.anchor_ns)}), and the kiosk's monotonic clock between the two: "
            f"the kiosk's clock was {_offset_words(offset)}."
        )
    elif estimate.method == "sync_stick" and estimate.lower_offset_ns() is not None:
        low = estimate.lower_offset_ns()
        assert low is not None
        view["estimate"] = f"no earlier than {time_text(started + low)}" if started is not None else ""
        lines.append(
            f"From a sync stick the station prepared at {time_text(estimate.anchor_ns)}, used in the same "
            "boot of the kiosk, and the kiosk's monotonic clock since: the stick was used after it was "
            "prepared, so this is the earliest the scan can have started."
        )
        if low > 0:
            lines.append(f"The kiosk's clock was behind by at least {span_text(low)}.")
    else:
        view["estimate"] = ""
        lines.append(
            "The station cannot estimate the true time: no record of this boot of the kiosk was written "
            "with a synchronised clock, and the journal holds no station time from a sync stick used in "
            "this boot (a kiosk journals a sync stick's token id, not the time the station prepared it)."
        )
    high = estimate.upper_offset_ns()
    if high is not None and started is not None:
        lines.append(
            f"The scan started no later than {time_text(started + high)}, when the station last "
            "imported this kiosk's journal."
        )
    if not estimate.consistent:
        lines.append(
            "These bounds contradict each other: the station's clock, or the kiosk's, is not to be trusted."
        )
    view["lines"] = lines
    return view


def _offset_words(offset_ns: int) -> str:
    if abs(offset_ns) < 2_000_000_000:
        return "right to within 2 seconds"
    return f"{'behind' if offset_ns > 0 else 'ahead'} by {span_text(offset_ns)}"


def partitions_view(record: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    for part in _dicts(record.get("partitions")):
        number_value = part.get("number")
        mounted = part.get("mounted") is True
        if mounted:
            mounting = f"read-only: {text(part.get('options'), 500) or 'no options journaled'}"
            driver = words(DRIVER_WORDS, part.get("driver"))
            mounting += f" ({driver})" if driver else ""
        else:
            mounting = "not mounted"
        replayed = _dict(part.get("replayed"))
        replay = ""
        if replayed:
            layer = words(LAYER_WORDS, replayed.get("layer"), "a copy-on-write layer")
            replay = f"journal replayed onto {layer}, mounted read-only: {text(replayed.get('options'), 500)}"
        elif part.get("needs_recovery") is True:
            replay = "journal needed recovery: not replayed"
        out.append(
            {
                "number": "whole device" if number_value == 0 else text(number_value, 40),
                "where": f"{size_text(part.get('size')).split(' (')[0]} from byte {number(part.get('start'))}"
                if _int(part.get("size")) is not None
                else "",
                "type": ""
                if number_value == 0
                else text(part.get("type_name"), 200) or text(part.get("type_id"), 60),
                "filesystem": text(part.get("fs_type"), 100) or "none recognised",
                "label": text(part.get("label"), 300),
                "uuid": text(part.get("uuid"), 300),
                "mounting": mounting,
                "recovery": text(part.get("recovery"), 500),
                "replay": replay,
                "problem": text(part.get("problem")),
            }
        )
    return out


def storages_view(record: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "name": text(s.get("description"), 300) or "storage without a name",
            "capacity": size_text(s.get("capacity")) if s.get("capacity") is not None else "",
            "free": size_text(s.get("free")) if s.get("free") is not None else "",
        }
        for s in _dicts(record.get("storages"))
    ]


def counts_facts(
    counts: Mapping[str, Any], report: Mapping[str, Any], record: Mapping[str, Any], mode: str
) -> list[Fact]:
    rows = [
        ("Folders", "directories", number),
        ("Files seen", "files_seen", number),
        ("Files read (digests computed)", "files_read", number),
        ("Empty files (nothing to look up)", "files_empty", number),
        ("Files read whole to confirm a hit", "files_confirmed", number),
        ("Files found but not read", "files_not_scanned", number),
        ("Bytes in the files opened", "bytes_seen", size_text),
        ("Bytes read", "bytes_read", size_text),
    ]
    facts = [Fact(label, shown(counts[key])) for label, key, shown in rows if key in counts]
    if mode:
        facts.append(Fact("Mode", words(MODE_WORDS, mode)))
    if text(record.get("exclusions"), 200):
        facts.append(
            Fact("Exclusions (reviewed false positives)", text(record.get("exclusions"), 200), mono=True)
        )
    kinds = [words(FIRST_PASS_WORDS, k) for k in _list(report.get("first_pass_kinds"))]
    if kinds:
        facts.append(Fact("Digests of every file", ", ".join(kinds)))
    consulted = []
    for flt in _dicts(report.get("filters")):
        by_role: dict[str, list[str]] = {}
        for s in _dicts(flt.get("sets")):
            by_role.setdefault(words(ROLE_WORDS, s.get("role"), "role not journaled"), []).append(
                f"{text(s.get('set'), 20)} ({text(s.get('kind'), 40)})"
            )
        if by_role:
            name = text(flt.get("name"), 300) or text(flt.get("filter_id"), 100)
            roles = "; ".join(f"{role}: sets {', '.join(sets)}" for role, sets in by_role.items())
            consulted.append(f"{name}: {roles}")
    if consulted:
        facts.append(Fact("Sets consulted", " — ".join(consulted)))
    return facts


def unchecked_view(scan: Scan, record: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    """Why the device, or part of it, was not completely checked; one sentence each."""
    out = []
    if scan.verdict == "interrupted":
        out.append("The kiosk journaled no verdict for this scan (it stopped or lost power).")
    if record.get("removed_early") is True:
        out.append("Removed early: the device was taken out before the scan finished.")
    if scan.verdict != "interrupted" and not report:
        out.append("Nothing was read: the journal holds no scan report for this device.")
    out.extend(text(p, 2000) for p in _list(record.get("device_problems")) if text(p, 2000))
    if report.get("cancelled") is True:
        out.append("The scan was cancelled before every file was read.")
    if report.get("stopped_at_first_priority") is True:
        out.append(
            "The scan stopped at the first priority match (the kiosk's setting): not every file was read."
        )
    counts = _dict(report.get("counts"))
    not_scanned = _int(counts.get("files_not_scanned"))
    if not_scanned:
        out.append(f"{number(not_scanned)} files found were not read.")
    for flt in _dicts(report.get("filters")):
        for s in _dicts(flt.get("sets")):
            if s.get("checked") is False:
                out.append(
                    f"Filter {text(flt.get('name'), 300)}, set {text(s.get('set'), 20)} "
                    f"({text(s.get('kind'), 40)}, {text(s.get('category'), 200)}): checked against nothing "
                    "(no sample set covers it in this mode)."
                )
    errors = [e for e in _dicts(report.get("errors"))]
    if errors:
        out.append(f"{number(len(errors))} files or folders could not be read (listed below).")
    not_listed = _int(report.get("errors_not_listed"))
    if not_listed:
        out.append(
            f"{number(not_listed)} more errors were not journaled one by one (the record would not fit); "
            "their counts by kind are kept."
        )
    return out


def problems_view(entries: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {
            "path": path_of(e),
            "code": words(CODE_WORDS, e.get("code")),
            "reason": text(e.get("reason"), 2000),
        }
        for e in entries
    ]


def filters_view(record: Mapping[str, Any], scan: Scan, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record's filters (id, name, signer, and whatever else the kiosk journaled) joined with
    the scan report's (source, sets) by id."""
    described: dict[str, dict[str, Any]] = {}
    for f in _dicts(report.get("filters")):
        described.setdefault(text(f.get("filter_id"), 200), f)
    listed = _list(record.get("filters")) or scan.filters
    entries: list[dict[str, Any]] = []
    for item in listed:
        entries.append(item if isinstance(item, dict) else {"id": item})
    known = {text(e.get("id") or e.get("filter_id"), 200) for e in entries}
    entries.extend(f for ident, f in described.items() if ident not in known)
    out = []
    for entry in entries:
        ident = text(entry.get("id") or entry.get("filter_id"), 200)
        full = {**described.get(ident, {}), **entry}
        sets = [
            {
                "set": text(s.get("set"), 20),
                "kind": words(DIGEST_LABELS, s.get("kind")),
                "category": text(s.get("category"), 300),
                "priority": words(PRIORITY_WORDS, s.get("priority")),
                "entries": number(s.get("entries")),
                "role": words(ROLE_WORDS, s.get("role")),
                "note": text(s.get("note"), 1000),
            }
            for s in _dicts(full.get("sets"))
        ]
        out.append(
            {
                "facts": [
                    Fact("Name", text(full.get("name"), 500) or "not journaled"),
                    Fact("Filter id", ident or "not journaled", mono=True),
                    Fact("Provider", text(full.get("provider"), 500) or "not journaled by the kiosk"),
                    Fact("Signed by key", text(full.get("signer"), 200) or "not journaled", mono=True),
                    Fact("Built", _date_words(full.get("created")) or "not journaled by the kiosk"),
                    Fact("Expires", _date_words(full.get("expires")) or "not journaled by the kiosk"),
                ]
                + (
                    [Fact("File on the kiosk", text(full.get("source"), 1000), mono=True)]
                    if full.get("source")
                    else []
                ),
                "sets": sets,
            }
        )
    return out


def _date_words(value: object) -> str:
    """A filter's date as journaled: Unix seconds or ISO 8601 text."""
    seconds = _int(value)
    if seconds is not None and abs(seconds) < 1 << 40:
        return time_text(seconds * 1_000_000_000)
    return text(value, 200)


def review_view(hit: Mapping[str, Any], history: Sequence[Review]) -> dict[str, Any]:
    """A hit's current review (``station review``: state, analyst, time, note) and the earlier ones."""
    if not history:
        return {"state": NOT_REVIEWED, "css": "r-none", "by": "", "note": "", "exclude": "", "earlier": [],
                "mismatch": ""}  # fmt: skip
    current = history[-1]
    copy = current.hit if isinstance(current.hit, dict) else {}
    mismatch = ""
    if copy and (copy.get("path") != hit.get("path") or copy.get("size") != hit.get("size")):
        mismatch = "This review was made of a hit with another path or size: check it against this one."
    return {
        "state": current.label,
        "css": REVIEW_CLASS.get(current.state, "r-none"),
        "by": f"{text(current.analyst, 200)}, {time_text(current.reviewed_ns)} (station clock)",
        "note": text(current.note, 4000),
        "exclude": "sent to kiosks as an exclusion" if current.exclude else "",
        "earlier": [
            f"{r.label}: {text(r.analyst, 200)}, {time_text(r.reviewed_ns)}"
            + (f": {text(r.note, 4000)}" if r.note else "")
            for r in reversed(history[:-1])
        ],
        "mismatch": mismatch,
    }


def hits_view(
    hits: Sequence[dict[str, Any]], reviews: Callable[[int], Sequence[Review]] = lambda index: ()
) -> list[dict[str, Any]]:
    out = []
    for index, hit in enumerate(hits):
        confirmed = hit.get("confirmed")
        if confirmed is True:
            confirmation = ("confirmed: a whole-file digest matched", "c-yes")
        elif confirmed is False:
            confirmation = (
                "not confirmed: only the sample digest matched; an examiner must look at the file",
                "c-no",
            )
        else:
            confirmation = ("not checked against whole-file digests", "c-no")
        matches = []
        for m in _dicts(hit.get("matches")):
            name = text(m.get("filter_name"), 300) or text(m.get("filter_id"), 100)
            line = (
                f"{name}, set {text(m.get('set'), 20)}: "
                f"{words(DIGEST_LABELS, m.get('kind'))}, category {text(m.get('category'), 300)}, "
                f"{words(PRIORITY_WORDS, m.get('priority'))} class"
            )
            if "confirmed" in m:
                state = m.get("confirmed")
                line += ", confirmed" if state is True else ", not confirmed" if state is False else ""
            matches.append(line)
        digests = _dict(hit.get("digests"))
        ordered = [k for k in DIGEST_ORDER if k in digests] + sorted(
            (k for k in digests if k not in DIGEST_ORDER), key=str
        )
        categories = hit.get("categories")
        out.append(
            {
                "number": index + 1,
                "index": index,
                "review": review_view(hit, reviews(index)),
                "path": path_of(hit),
                "size": size_text(hit.get("size")),
                "priority": "priority" if hit.get("priority") is True else "other",
                "categories": text(categories if isinstance(categories, list) else [], 1000),
                "confirmation": confirmation[0],
                "confirmation_css": confirmation[1],
                "matches": matches,
                "digests": [(words(DIGEST_LABELS, k, "digest"), text(digests[k], 300)) for k in ordered[:20]],
            }
        )
    return out


def merged_record(records: Sequence[StoredRecord]) -> dict[str, Any]:
    """The fields of a scan's records in one map (a later record's field wins)."""
    record: dict[str, Any] = {}
    for r in records:
        if r.kind in ("scan", "scan_started", "scan_finished"):
            record.update(r.body)
    return record


def scan_view(scan: Scan, records: Sequence[StoredRecord], context: ReportContext) -> dict[str, Any]:
    """Everything the scan page shows, as words; never raises for odd values."""
    record = merged_record(records)
    anchor = next((r for r in records if r.kind in ("scan", "scan_started")), records[0] if records else None)
    report = _dict(record.get("scan")) or _dict(record.get("report"))
    device = _dict(record.get("device")) or scan.device
    clock = context.clocks.get(scan.kiosk)
    if clock is None:
        clock = KioskClock({}, {}, None)
    estimate = clock.estimate(
        anchor.boot_id if anchor else None,
        anchor.monotonic_ns if anchor else None,
        anchor.wall_ns if anchor else None,
        scan.clock_synchronised,
    )
    summary = device_facts(device, record)
    summary.append(Fact("Kiosk", context.kiosk_name(scan.kiosk)))
    location = text(getattr(context.kiosks.get(scan.kiosk), "location", ""), 300)
    if location:
        summary.append(Fact("Kiosk location", location))
    if context.kiosk_name(scan.kiosk) != scan.kiosk:
        summary.append(Fact("Kiosk id", scan.kiosk, mono=True))
    if text(record.get("bay"), 200):
        summary.append(Fact("Bay", text(record.get("bay"), 200)))
    for label, key in (("Exhibit", "exhibit"), ("Officer", "officer")):
        if text(record.get(key), 1000):
            summary.append(Fact(label, text(record.get(key), 1000)))
    summary.append(Fact("Started", time_text(scan.started_ns) or "not journaled", detail="kiosk clock"))
    if scan.finished_ns is not None:
        summary.append(Fact("Finished", time_text(scan.finished_ns), detail="kiosk clock"))
    duration = duration_text(record.get("seconds"), scan.started_ns, scan.finished_ns)
    if duration:
        summary.append(Fact("Duration", duration))
    clock_words = clock_view(scan, estimate)
    summary.append(Fact("Kiosk clock", clock_words["state"]))
    lights = [words(SIGNAL_WORDS, s) for s in scan.lights]
    if lights:
        summary.append(Fact("Lights shown", " → ".join(lights)))
    if scan.hits:
        summary.append(Fact("Review", review_summary(scan, context.reviews)))
    if anchor is not None:
        summary.append(Fact("Journal", f"segment {anchor.segment}, record {anchor.index}"))
    table = record.get("partition_table")
    read_as = (
        words(PHONE_WORDS, device.get("phone_kind"), "phone")
        if device.get("kind") == "phone"
        else words(TABLE_WORDS, table)
    )
    counts = _dict(report.get("counts")) or scan.counts
    skipped = _dicts(report.get("skipped")) if report else scan.skipped
    errors = _dicts(report.get("errors")) if report else [e for e in scan.errors if e.get("code") != "device"]

    blocks = block_sample_view(scan, record)
    verdict = verdict_view(scan.verdict, is_empty(scan.verdict, counts, record))
    if blocks["meaning"]:  # red or amber from known blocks alone: no file matched
        verdict["meaning"] = blocks["meaning"]
    return {
        "title": f"{VERDICT_WORDS.get(scan.verdict, 'scan')}: {device_label(device)}",
        "verdict": verdict,
        "blocks": blocks,
        "summary": summary,
        "clock": clock_words,
        "started_iso": iso_text(scan.started_ns),
        "read_as": read_as if table or device.get("kind") == "phone" else "",
        "partitions": partitions_view(record),
        "storages": storages_view(record),
        "counts": counts_facts(counts, report, record, text(record.get("mode"), 100) or scan.mode),
        "unchecked": unchecked_view(scan, record, report),
        "errors": problems_view(errors),
        "skipped": problems_view(skipped),
        "skipped_not_listed": number(report.get("skipped_not_listed"))
        if _int(report.get("skipped_not_listed"))
        else "",
        "cleanup": [text(p, 2000) for p in _list(record.get("cleanup_problems")) if text(p, 2000)],
        "notes": [text(n, 2000) for n in _list(record.get("notes")) if text(n, 2000)],
        "filters": filters_view(record, scan, report),
        "hits": hits_view(
            scan.hits, lambda index: context.reviews.get((scan.kiosk, scan.scan_id, index), ())
        ),
        "key": scan.key,
    }


def review_summary(scan: Scan, reviews: Mapping[HitKey, Sequence[Review]]) -> str:
    """``1 of 2 hits reviewed: 1 confirmed``."""
    states = Counter(
        history[-1].label
        for index in range(len(scan.hits))
        if (history := reviews.get((scan.kiosk, scan.scan_id, index)))
    )
    done = sum(states.values())
    shown = f"{done} of {len(scan.hits)} hits reviewed"
    return shown + (": " + ", ".join(f"{n} {label}" for label, n in sorted(states.items())) if done else "")


def scan_row(scan: Scan, context: ReportContext) -> dict[str, str]:
    exhibit = context.exhibits.get(scan.key, "")
    return {
        "page": page_name(scan),
        "started": time_text(scan.started_ns) or "not journaled",
        "kiosk": context.kiosk_name(scan.kiosk),
        "device": device_label(scan.device),
        "serial": text(scan.device.get("serial"), 300),
        "exhibit": exhibit,
        "verdict": verdict_view(scan.verdict)["words"],
        "note": EMPTY_WORDS if is_empty(scan.verdict, scan.counts) else "",
        "css": verdict_view(scan.verdict)["css"],
        "hits": number(len(scan.hits)),
        "block_hits": number(scan.block_hit_count()) if scan.blocks is not None or scan.block_hits else "",
        "reviewed": review_summary(scan, context.reviews) if scan.hits else "",
        "problems": number(len(scan.errors)),
    }


def findings_view(findings: Sequence[tuple[str, ...]], context: ReportContext) -> list[dict[str, str]]:
    out = []
    for finding in findings:
        severity, kiosk, segment, record_index, message = (tuple(finding) + ("",) * 5)[:5]
        out.append(
            {
                "severity": text(severity, 40),
                "kiosk": context.kiosk_name(kiosk) if kiosk else "",
                "segment": text(segment, 40),
                "record": text(record_index, 40),
                "message": text(message, 4000),
            }
        )
    return out


def kiosks_view(
    summaries: Sequence[KioskSummary],
    scans: Sequence[Scan],
    findings: Sequence[tuple[str, ...]],
    context: ReportContext,
) -> list[dict[str, Any]]:
    by_kiosk: dict[str, list[Scan]] = {}
    for s in scans:
        by_kiosk.setdefault(s.kiosk, []).append(s)
    out = []
    for k in summaries:
        mine = by_kiosk.get(k.kiosk_id, [])
        verdicts = Counter(verdict_view(s.verdict)["words"] for s in mine)
        order = [*VERDICT_WORDS.values(), "unknown"]
        filters = []
        for f in k.filters if isinstance(k.filters, list) else []:
            entry = _dict(f)
            filters.append(
                {
                    "name": text(entry.get("name"), 500) or "not journaled",
                    "id": text(entry.get("id") or entry.get("filter_id"), 200),
                    "entries": number(entry.get("entries")) if entry.get("entries") is not None else "",
                    "signer": text(entry.get("signer"), 200),
                    "expires": _date_words(entry.get("expires")),
                }
            )
        facts = [
            Fact(label, _iso_words(text(getattr(k, key, ""), 300)), detail=detail)
            for label, key, detail in (
                ("Location", "location", ""),
                ("Host name", "hostname", ""),
                ("Enrolled", "enrolled", "station clock"),
                ("Retired from", "retired_from", "records from then on are refused"),
            )
            if text(getattr(k, key, ""), 300)
        ]
        facts += [
            Fact("Scans in this report", number(len(mine))),
            Fact("Last import at the station", _iso_words(k.last_import) or "never", detail="station clock"),
            Fact("Newest record", _iso_words(k.newest_record) or "none", detail="kiosk clock"),
            Fact("Journal", f"{number(k.segments)} segments, {number(k.records)} records"),
            Fact("Alarms", number(k.alarms)),
        ]
        last_sync = _last_sync(context.store, k.kiosk_id)
        if last_sync:
            facts.insert(2, Fact("Last sync stick used", last_sync, detail="kiosk clock"))
        out.append(
            {
                "id": k.kiosk_id,
                "name": context.kiosk_name(k.kiosk_id),
                "facts": facts,
                "verdicts": [(v, number(verdicts[v])) for v in order if verdicts[v]],
                "filters": filters,
                "alarms": findings_view([f for f in findings if f[1:2] == (k.kiosk_id,)], context),
                "scans": [scan_row(s, context) for s in mine],
            }
        )
    return out


def _iso_words(value: str | None) -> str:
    """An ISO 8601 time as the pages show times; other text as it is."""
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return text(value, 100)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _last_sync(store: Store | None, kiosk_id: str) -> str:
    if store is None:
        return ""
    rows = store.query(
        "SELECT wall_ns, body FROM records WHERE kiosk_id = ? AND type = 'sync' "
        "ORDER BY segment DESC, idx DESC LIMIT 1",
        (kiosk_id,),
    )
    if not rows:
        return ""
    wall, body_text = rows[0]
    try:
        body = body_from_json(body_text) if isinstance(body_text, str) else {}
    except ValueError:
        body = {}
    shown = time_text(_int(wall)) or "time not journaled"
    if body.get("error"):
        shown += f" (failed: {text(body.get('error'), 500)})"
    return shown


# -- rendering ------------------------------------------------------------------------------------


def _finalize(value: object) -> object:
    """Every value a template shows: printable text (then autoescaped), never a raw None/True."""
    if hasattr(value, "__html__"):  # a macro's output (Markup), already escaped by the templates
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Printed):
        return str(value)
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, int | float):
        return text(value)
    return printable(text(value))


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("station", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENVIRONMENT: jinja2.Environment | None = None


def _render(template: str, **values: Any) -> str:
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = environment()
    return _ENVIRONMENT.get_template(template).render(content_policy=CONTENT_POLICY, **values)


def report_context(store: Store | None, scans: Sequence[Scan], now_ns: int | None = None) -> ReportContext:
    context = ReportContext(store, generated_ns=now_ns if now_ns is not None else _now_ns())
    if store is not None:
        context.clocks = kiosk_clocks(store, [s.kiosk for s in scans])
        context.reviews = report_reviews(store)
        context.kiosks = {k.kiosk_id: k for k in kiosk_overview(store)}
    return context


def report_reviews(store: Store) -> dict[HitKey, list[Review]]:
    """Every review of every hit (``station review``), oldest first, by hit."""
    reviews: dict[HitKey, list[Review]] = {}
    for review in review_history(store):
        reviews.setdefault(review.key, []).append(review)
    return reviews


def _now_ns() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1e9)


def overview_html(
    scans: Sequence[Scan], findings: Sequence[tuple[str, ...]], context: ReportContext | None = None
) -> str:
    context = context or report_context(None, scans)
    return _render(
        "index.html",
        rows=[scan_row(s, context) for s in scans],
        findings=findings_view(findings, context),
        generated=time_text(context.generated_ns),
    )


def kiosks_html(
    summaries: Sequence[KioskSummary],
    scans: Sequence[Scan],
    findings: Sequence[tuple[str, ...]],
    context: ReportContext,
) -> str:
    return _render(
        "kiosks.html",
        kiosks=kiosks_view(summaries, scans, findings, context),
        generated=time_text(context.generated_ns),
    )


def scan_html(scan: Scan, records: Sequence[StoredRecord] = (), context: ReportContext | None = None) -> str:
    context = context or report_context(None, [scan])
    return _render(
        "scan.html", scan=scan_view(scan, records, context), generated=time_text(context.generated_ns)
    )


def write_html_report(
    folder: Path,
    scans: Sequence[Scan],
    findings: Sequence[tuple[str, ...]],
    store: Store | None = None,
    kiosk_prefix: str | None = None,
) -> list[Path]:
    """``index.html``, ``kiosks.html`` and a page per scan in ``folder``; the paths written."""
    context = report_context(store, scans)
    records = {s.key: scan_records(store, s) if store is not None else [] for s in scans}
    for s in scans:
        context.exhibits[s.key] = text(merged_record(records[s.key]).get("exhibit"), 300)
    summaries = [
        k
        for k in (kiosk_overview(store) if store is not None else [])
        if kiosk_prefix is None or k.kiosk_id.startswith(kiosk_prefix)
    ]
    pages = {
        "index.html": overview_html(scans, findings, context),
        "kiosks.html": kiosks_html(summaries, scans, findings, context),
    }
    for scan in scans:
        pages[page_name(scan)] = scan_html(scan, records[scan.key], context)
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, page in pages.items():
            path = folder / name
            path.write_text(page, encoding="utf-8")
            written.append(path)
    except OSError as err:
        raise StationError(folder, f"cannot write the report: {err.strerror}") from err
    return written


# -- CSV and JSON ---------------------------------------------------------------------------------


def csv_report(
    scans: Sequence[Scan],
    reviews: Mapping[HitKey, Sequence[Review]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """One row per scan; ``labels``: kiosk id -> its enrolled name (``station.kiosks.kiosk_labels``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for s in scans:
        priority_hits = sum(1 for h in s.hits if h.get("priority") is True)
        writer.writerow(
            [
                cell(v)
                for v in (
                    s.kiosk,
                    (labels or {}).get(s.kiosk, ""),
                    s.scan_id,
                    iso_text(s.started_ns),
                    iso_text(s.finished_ns),
                    s.clock_synchronised,
                    s.device_label(),
                    s.mode,
                    s.verdict,
                    len(s.hits),
                    priority_hits,
                    s.block_hit_count(),
                    len(s.errors),
                    len(s.skipped),
                    " > ".join(s.lights),
                    review_summary(s, reviews or {}) if s.hits else "",
                )
            ]
        )
    return buffer.getvalue()


def scan_json(
    scan: Scan,
    reviews: Mapping[HitKey, Sequence[Review]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``Scan.to_json()``, with times out of any calendar left out (and said so) instead of raising."""
    bad = [
        name
        for name in ("started_ns", "finished_ns")
        if getattr(scan, name) is not None and not iso_text(getattr(scan, name))
    ]
    shown = dataclasses.replace(
        scan,
        started_ns=None if "started_ns" in bad else scan.started_ns,
        finished_ns=None if "finished_ns" in bad else scan.finished_ns,
    )
    out = shown.to_json()
    out["kiosk_name"] = (labels or {}).get(scan.kiosk, "")
    out["reviews"] = [
        {**history[-1].to_json(), "earlier": len(history) - 1}
        for index in range(len(scan.hits))
        if (history := (reviews or {}).get((scan.kiosk, scan.scan_id, index)))
    ]
    if bad:
        out["time_problems"] = [f"{name[:-3]}: out of range ({getattr(scan, name)} ns)" for name in bad]
    return out


def json_report(
    scans: Sequence[Scan],
    findings: Sequence[tuple[str, ...]],
    reviews: Mapping[HitKey, Sequence[Review]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    document = {
        "scans": [scan_json(s, reviews, labels) for s in scans],
        "findings": [
            dict(zip(("severity", "kiosk", "segment", "record", "message"), f, strict=True)) for f in findings
        ],
    }
    return json.dumps(document, indent=2, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))
