"""What an import found wrong (or worth knowing) about a segment or record.

Severities: ``alarm`` (tampering, forgery, loss: an analyst must look), ``warning`` (something is
missing that may still arrive, or a segment was not closed), ``notice`` (a power cut's torn last
record, a new kiosk).

Example::

    >>> Finding("alarm", "stick/segment-00000003.ftj", "ab" * 16, 3, 5, "signature does not verify").line()
    'alarm: kiosk abababab segment 3 record 5: signature does not verify (stick/segment-00000003.ftj)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from filters.errors import printable

Severity = Literal["alarm", "warning", "notice"]
SEVERITY_ORDER: dict[str, int] = {"alarm": 0, "warning": 1, "notice": 2}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    source: str
    kiosk: str | None
    segment: int | None
    record: int | None
    message: str

    def where(self) -> str:
        parts = []
        if self.kiosk:
            parts.append(f"kiosk {self.kiosk[:8]}")
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.record is not None:
            parts.append(f"record {self.record}")
        return " ".join(parts) or "file"

    def line(self) -> str:
        return printable(f"{self.severity}: {self.where()}: {self.message} ({self.source})")
