"""The one exhibit reference waiting for a device: scanned, then taken by the next device plugged
into any bay, or dropped (journaled) after ``timeout_seconds`` or when a new label replaces it.

Example::

    >>> clock = iter([0.0, 10.0]).__next__
    >>> desk = PendingExhibits(300.0, clock=clock)
    >>> desk.scan("EXH-1") is None
    True
    >>> desk.scan("EXH-2")["exhibit"], desk.pending.reference
    ('EXH-1', 'EXH-2')
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def wall_iso() -> str:
    """Now, as the bays' ``started``/``finished`` say it (UTC, microseconds)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PendingExhibit:
    reference: str
    scanned: str  # ISO 8601 UTC, when the label was read
    at: float  # monotonic seconds, when the label was read


class PendingExhibits:
    """At most one reference at a time: the officer scans a label, then plugs the device in."""

    def __init__(self, timeout_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.pending: PendingExhibit | None = None

    def scan(self, reference: str) -> dict[str, Any] | None:
        """``reference`` is now pending; the record of the one it replaces, if any."""
        replaced = self._dropped("replaced by a new label") if self.pending is not None else None
        self.pending = PendingExhibit(reference, wall_iso(), self.clock())
        return replaced

    def take(self) -> PendingExhibit | None:
        """The pending reference, for the device just plugged in (then nothing is pending)."""
        taken, self.pending = self.pending, None
        return taken

    def expire(self, now: float) -> dict[str, Any] | None:
        """The ``exhibit_dropped`` record when the pending reference has waited too long."""
        if self.pending is None or now - self.pending.at < self.timeout_seconds:
            return None
        return self._dropped(f"no device within {self.timeout_seconds:g} s")

    def drop(self, reason: str) -> dict[str, Any] | None:
        return self._dropped(reason) if self.pending is not None else None

    def due(self, now: float) -> float | None:
        """Seconds until the pending reference is dropped (None: nothing pending)."""
        if self.pending is None:
            return None
        return max(0.0, self.pending.at + self.timeout_seconds - now)

    def describe(self) -> dict[str, Any] | None:
        if self.pending is None:
            return None
        return {"exhibit": self.pending.reference, "scanned": self.pending.scanned}

    def _dropped(self, reason: str) -> dict[str, Any]:
        assert self.pending is not None
        dropped, self.pending = self.pending, None
        return {
            "type": "exhibit_dropped",
            "exhibit": dropped.reference,
            "scanned": dropped.scanned,
            "dropped": wall_iso(),
            "reason": reason,
        }
