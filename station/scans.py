"""Scans as an analyst sees them, folded from the stored journal records.

Two shapes are understood (docs/journal-format.md, section 6). The daemon's: one ``scan`` record
per scan with device, filters, mode, started, finished, verdict, ``lights_shown`` and the scan
report under ``scan`` (hits, errors, skipped entries). And split records sharing a ``scan_id``:
``scan_started`` (device, filters, mode), ``lights``, ``scan_finished`` (verdict, report); a scan
with no ``scan_finished`` record is shown as interrupted.

Example::

    >>> from station.store import Store
    >>> load_scans(Store.open(":memory:"))
    []
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from station.store import Store, body_from_json


@dataclass
class Scan:
    kiosk: str
    scan_id: str
    device: dict[str, Any] = field(default_factory=dict)
    filters: list[Any] = field(default_factory=list)
    mode: str = ""
    started_ns: int | None = None
    finished_ns: int | None = None
    clock_synchronised: bool | None = None
    verdict: str = "interrupted"
    hits: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    lights: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, Any] | None = None  # the block sample of the raw device (None: none taken)
    block_hits: list[dict[str, Any]] = field(default_factory=list)  # known blocks, by offset
    statement: str | None = None  # the verdict in words with what backs it ("no match: every file...")

    @property
    def key(self) -> str:
        return f"{self.kiosk}:{self.scan_id}"

    def device_label(self) -> str:
        parts = [str(self.device.get(k, "")) for k in ("vendor", "model") if self.device.get(k)]
        serial = self.device.get("serial")
        label = " ".join(parts) or str(self.device.get("devnode", "") or "unknown device")
        return f"{label} (serial {serial})" if serial else label

    def block_hit_count(self) -> int:
        """Known blocks found by the block sample: the section's count (also those not listed)."""
        counted = (self.blocks or {}).get("hits")
        if isinstance(counted, int) and not isinstance(counted, bool) and counted >= len(self.block_hits):
            return counted
        return len(self.block_hits)

    def to_json(self) -> dict[str, Any]:
        return {
            "kiosk": self.kiosk,
            "scan_id": self.scan_id,
            "device": self.device,
            "filters": self.filters,
            "mode": self.mode,
            "started": iso_ns(self.started_ns),
            "finished": iso_ns(self.finished_ns),
            "clock_synchronised": self.clock_synchronised,
            "verdict": self.verdict,
            "hits": self.hits,
            "errors": self.errors,
            "skipped": self.skipped,
            "lights": self.lights,
            "counts": self.counts,
            "blocks": self.blocks,
            "block_hits": self.block_hits,
            "statement": self.statement,
        }


def iso_ns(stamp: int | None) -> str | None:
    if stamp is None:
        return None
    return dt.datetime.fromtimestamp(stamp / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_scans(store: Store, *, since_ns: int | None = None, kiosk_prefix: str | None = None) -> list[Scan]:
    rows = store.query(
        "SELECT kiosk_id, segment, idx, scan_id, type, wall_ns, clock_synchronised, body FROM records "
        "WHERE scan_id IS NOT NULL OR type = 'scan' ORDER BY kiosk_id, segment, idx"
    )
    scans: dict[tuple[str, str], Scan] = {}
    for kiosk, segment, index, scan_id, kind, wall_ns, synchronised, body_text in rows:
        key = scan_id or f"{segment}.{index}"
        scan = scans.setdefault((kiosk, key), Scan(kiosk, key))
        _fold(scan, kind, wall_ns, synchronised, body_from_json(body_text))
    selected = [
        s
        for s in scans.values()
        if (since_ns is None or (s.started_ns or s.finished_ns or 0) >= since_ns)
        and (kiosk_prefix is None or s.kiosk.startswith(kiosk_prefix))
    ]
    return sorted(selected, key=lambda s: (s.started_ns or s.finished_ns or 0, s.kiosk, s.scan_id))


def _fold(
    scan: Scan, kind: str | None, wall_ns: int | None, synchronised: int | None, body: dict[str, Any]
) -> None:
    if kind in ("scan_started", "scan"):
        scan.started_ns = _iso_to_ns(body.get("started")) or wall_ns
        scan.clock_synchronised = None if synchronised is None else bool(synchronised)
        scan.device = _dict(body.get("device"))
        scan.filters = _list(body.get("filters"))
        scan.mode = str(body.get("mode", ""))
    if kind in ("scan_finished", "scan"):
        scan.finished_ns = _iso_to_ns(body.get("finished")) or wall_ns
        report = _dict(body.get("report") or body.get("scan"))
        scan.verdict = str(body.get("verdict") or report.get("verdict") or "unknown")
        scan.mode = scan.mode or str(report.get("mode", ""))
        scan.hits.extend(h for h in _list(report.get("hits")) if isinstance(h, dict))
        scan.errors.extend(p for p in _list(report.get("errors")) if isinstance(p, dict))
        scan.errors.extend(
            {"path": "", "code": "device", "reason": str(p)} for p in _list(body.get("device_problems"))
        )
        scan.skipped.extend(p for p in _list(report.get("skipped")) if isinstance(p, dict))
        scan.counts = _dict(report.get("counts"))
        scan.lights.extend(str(x) for x in _list(body.get("lights") or body.get("lights_shown")))
        if isinstance(body.get("blocks"), dict):
            scan.blocks = body["blocks"]
        scan.block_hits.extend(h for h in _list(body.get("block_hits")) if isinstance(h, dict))
        if isinstance(body.get("statement"), str):
            scan.statement = body["statement"]
        if not scan.filters:
            scan.filters = [f.get("filter_id") for f in _list(report.get("filters")) if isinstance(f, dict)]
    elif kind == "lights" and body.get("shown") is not None:
        scan.lights.append(str(body["shown"]))


def _iso_to_ns(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1e9)


def filter_label(entry: object) -> str:
    """A filter as journaled: an id, or a map with ``name`` and ``id``/``filter_id``."""
    if isinstance(entry, dict):
        ident = entry.get("id") or entry.get("filter_id") or ""
        name = entry.get("name")
        return f"{name} ({ident})" if name else str(ident)
    return str(entry)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
