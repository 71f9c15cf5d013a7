"""``fieldtriage station kiosks``: which kiosks exist, when each last synced, which filters each carries.

A kiosk is registered at the first import of its journal. "Filters carried" comes from the newest
record that lists filters: a ``filters`` record, or else a scan record (docs/journal-format.md,
section 6).

Example::

    >>> from station.store import Store
    >>> kiosk_overview(Store.open(":memory:"))
    []
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from station.scans import iso_ns
from station.store import Store, body_from_json


@dataclass
class KioskSummary:
    kiosk_id: str
    first_import: str | None
    last_import: str | None
    newest_record: str | None
    segments: int
    records: int
    alarms: int
    filters: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return vars(self).copy()


def kiosk_overview(store: Store) -> list[KioskSummary]:
    out = []
    for kiosk_id, first, last, newest in store.query(
        "SELECT kiosk_id, first_import_ns, last_import_ns, last_record_wall_ns FROM kiosks ORDER BY kiosk_id"
    ):
        segments = store.query("SELECT COUNT(*) FROM segments WHERE kiosk_id = ?", (kiosk_id,))[0][0]
        records = store.query("SELECT COUNT(*) FROM records WHERE kiosk_id = ?", (kiosk_id,))[0][0]
        alarms = store.query(
            "SELECT COUNT(*) FROM findings WHERE kiosk_id = ? AND severity = 'alarm'", (kiosk_id,)
        )[0][0]
        latest = store.query(
            "SELECT body FROM records WHERE kiosk_id = ? AND type IN ('filters', 'scan', 'scan_started') "
            "ORDER BY segment DESC, idx DESC LIMIT 1",
            (kiosk_id,),
        )
        filters = body_from_json(latest[0][0]).get("filters", []) if latest else []
        out.append(
            KioskSummary(
                kiosk_id,
                iso_ns(first),
                iso_ns(last),
                iso_ns(newest),
                segments,
                records,
                alarms,
                [f if isinstance(f, dict) else {"filter_id": str(f)} for f in filters],
            )
        )
    return out
