"""What an import found wrong (or worth knowing) about a segment or record.

Severities: ``alarm`` (tampering, forgery, loss, a kiosk that is not enrolled, a record that fails
its schema: an analyst must look), ``warning`` (something is missing that may still arrive: cleared
when it does), ``notice`` (a power cut's torn tail, a segment that was not closed).

Example::

    >>> Finding("alarm", "stick/segment-00000003.ftj", "ab" * 16, 3, 5, "signature does not verify").line()
    'alarm: kiosk abababab segment 3 record 5: signature does not verify (stick/segment-00000003.ftj)'
    >>> Finding("notice", "db", "ab" * 16, 3, None, "was not closed").line({"ab" * 16: "CPU bay 2"})
    'notice: kiosk CPU bay 2 segment 3: was not closed (db)'
    >>> index_ranges([0, 1, 2, 5, 7, 8])
    '0-2, 5, 7-8'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

    def where(self, labels: Mapping[str, str] | None = None) -> str:
        """``labels``: kiosk id -> the name it was enrolled with (``station.kiosks.kiosk_labels``)."""
        parts = []
        if self.kiosk:
            parts.append(f"kiosk {(labels or {}).get(self.kiosk) or self.kiosk[:8]}")
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.record is not None:
            parts.append(f"record {self.record}")
        return " ".join(parts) or "file"

    def line(self, labels: Mapping[str, str] | None = None) -> str:
        return printable(f"{self.severity}: {self.where(labels)}: {self.message} ({self.source})")


def index_ranges(numbers: Iterable[int]) -> str:
    """Record indexes as runs: ``0-2, 5``."""
    runs: list[list[int]] = []
    for number in sorted(set(numbers)):
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
