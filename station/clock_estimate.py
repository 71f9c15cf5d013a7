"""The station's best estimate of the true time of a kiosk record whose clock was not synchronised.

Every journal record carries the kiosk's wall clock, its monotonic clock and its boot id
(agent/journal/clock.py). Within one boot the monotonic clock runs on without steps (a kiosk does
not suspend), so the true time of any record of that boot follows from one moment of the same boot
whose true time is known:

* ``same_boot``: a record of the same boot written while the kiosk's clock was synchronised (NTP
  came up later, or earlier) gives the offset between the true time and the monotonic clock; the
  estimate is then as good as that clock (seconds at most).
* ``sync_stick``: a sync stick used in the same boot whose ``sync`` record carries
  ``token_created``, the station's time (Unix seconds) when it prepared that stick. The stick was
  used after it was prepared, so this is a lower bound ("no earlier than"), not a point. A
  ``clock_step`` record of the same boot (the kiosk stepped its clock forward to that time,
  agent/daemon/clock_step.py) is the same kind of anchor, taken at the step itself: ``to_ns`` at the
  step's ``monotonic_ns``, a lower bound a little tighter than the sync record's, which is written
  after the copy.
* The station's last import of the kiosk's journal is an upper bound of every record it holds.

Kiosks of earlier releases journal a sync stick's ``token_id`` but not ``token_created``, and
the station keeps no list of the tokens it issued: without a synchronised record (NTP, or a trusted
RTC: ``clock_source`` ``ntp`` or ``rtc``) or a stick in the same boot there is no estimate, and the
page says so.

Example::

    >>> clock = KioskClock({"b": [(10_000, 1_700_000_000 * 10**9)]}, {}, None)
    >>> estimate = clock.estimate("b", 4_000, 5 * 10**9, False)
    >>> estimate.method, estimate.true_ns
    ('same_boot', 1699999999999994000)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeGuard

from filters.errors import FieldtriageError
from station.store import Store, body_from_json

ClockState = Literal["synchronised", "not_synchronised", "unknown"]
Method = Literal["kiosk_clock", "same_boot", "sync_stick", "none"]
MAX_TOKEN_SECONDS = 1 << 40  # beyond any date the report can show


@dataclass(frozen=True)
class ClockEstimate:
    """What the station can say about the true time of one record (``wall_ns`` on the kiosk)."""

    state: ClockState
    method: Method
    wall_ns: int | None  # the kiosk's own time of the record
    true_ns: int | None = None  # point estimate (kiosk_clock, same_boot)
    at_least_ns: int | None = None  # lower bound (sync_stick)
    at_most_ns: int | None = None  # upper bound (the station's last import)
    anchor_ns: int | None = None  # the anchor's own time: the synchronised record, the stick's token

    def offset_ns(self) -> int | None:
        """True time minus the kiosk's clock, when there is a point estimate."""
        if self.true_ns is None or self.wall_ns is None:
            return None
        return self.true_ns - self.wall_ns

    def lower_offset_ns(self) -> int | None:
        if self.at_least_ns is None or self.wall_ns is None:
            return None
        return self.at_least_ns - self.wall_ns

    def upper_offset_ns(self) -> int | None:
        if self.at_most_ns is None or self.wall_ns is None:
            return None
        return self.at_most_ns - self.wall_ns

    @property
    def consistent(self) -> bool:
        """False when the bounds contradict each other (a station or kiosk clock that lies)."""
        low = self.true_ns if self.true_ns is not None else self.at_least_ns
        return low is None or self.at_most_ns is None or low <= self.at_most_ns


class KioskClock:
    """Anchors of one kiosk, by boot: ``synchronised[boot] = [(monotonic_ns, wall_ns)]`` of records
    written with a synchronised clock, ``sticks[boot] = [(monotonic_ns, station_ns)]`` of sync
    records that carry the station's time and of clock steps to it; ``imported_ns`` the station's
    last import."""

    def __init__(
        self,
        synchronised: dict[str, list[tuple[int, int]]],
        sticks: dict[str, list[tuple[int, int]]],
        imported_ns: int | None,
    ) -> None:
        self.synchronised = synchronised
        self.sticks = sticks
        self.imported_ns = imported_ns

    def estimate(
        self, boot_id: str | None, monotonic_ns: int | None, wall_ns: int | None, synchronised: bool | None
    ) -> ClockEstimate:
        if synchronised:
            return ClockEstimate("synchronised", "kiosk_clock", wall_ns, true_ns=wall_ns)
        state: ClockState = "unknown" if synchronised is None else "not_synchronised"
        upper = self.imported_ns
        if not boot_id or monotonic_ns is None:
            return ClockEstimate(state, "none", wall_ns, at_most_ns=upper)
        anchors = self.synchronised.get(boot_id, [])
        if anchors:
            anchor_mono, anchor_wall = min(anchors, key=lambda a: abs(a[0] - monotonic_ns))
            return ClockEstimate(
                state,
                "same_boot",
                wall_ns,
                true_ns=anchor_wall + (monotonic_ns - anchor_mono),
                at_most_ns=upper,
                anchor_ns=anchor_wall,
            )
        sticks = self.sticks.get(boot_id, [])
        if sticks:
            bound, token = max((station + (monotonic_ns - mono), station) for mono, station in sticks)
            return ClockEstimate(
                state, "sync_stick", wall_ns, at_least_ns=bound, at_most_ns=upper, anchor_ns=token
            )
        return ClockEstimate(state, "none", wall_ns, at_most_ns=upper)


def kiosk_clock(store: Store, kiosk_id: str) -> KioskClock:
    """The anchors the station holds for ``kiosk_id`` (never raises for odd stored values)."""
    synchronised: dict[str, list[tuple[int, int]]] = {}
    for boot, mono, wall in store.query(
        "SELECT boot_id, monotonic_ns, wall_ns FROM records WHERE kiosk_id = ? AND clock_synchronised = 1",
        (kiosk_id,),
    ):
        if isinstance(boot, str) and boot and _is_int(mono) and _is_int(wall):
            synchronised.setdefault(boot, []).append((mono, wall))
    sticks: dict[str, list[tuple[int, int]]] = {}
    for boot, mono, body_text in store.query(
        "SELECT boot_id, monotonic_ns, body FROM records WHERE kiosk_id = ? AND type = 'sync'", (kiosk_id,)
    ):
        created = _token_created(body_text)
        if isinstance(boot, str) and boot and _is_int(mono) and created is not None:
            sticks.setdefault(boot, []).append((mono, created))
    for boot, body_text in store.query(
        "SELECT boot_id, body FROM records WHERE kiosk_id = ? AND type = 'clock_step'", (kiosk_id,)
    ):
        step = _clock_step(body_text)
        if isinstance(boot, str) and boot and step is not None:
            sticks.setdefault(boot, []).append(step)
    return KioskClock(synchronised, sticks, _last_import(store, kiosk_id))


def kiosk_clocks(store: Store, kiosk_ids: Iterable[str]) -> dict[str, KioskClock]:
    return {kiosk: kiosk_clock(store, kiosk) for kiosk in dict.fromkeys(kiosk_ids)}


def _token_created(body_text: object) -> int | None:
    if not isinstance(body_text, str):
        return None
    try:
        value = body_from_json(body_text).get("token_created")
    except ValueError:
        return None
    if _is_int(value) and 0 < value < MAX_TOKEN_SECONDS:
        return value * 1_000_000_000
    return None


def _clock_step(body_text: object) -> tuple[int, int] | None:
    """(``monotonic_ns``, ``to_ns``) of a clock_step record: the step's own moment and the station's
    time the clock was set to (a lower bound of the true time then)."""
    if not isinstance(body_text, str):
        return None
    try:
        body = body_from_json(body_text)
    except ValueError:
        return None
    mono, to = body.get("monotonic_ns"), body.get("to_ns")
    if _is_int(mono) and mono >= 0 and _is_int(to) and 0 < to < MAX_TOKEN_SECONDS * 1_000_000_000:
        return mono, to
    return None


def _last_import(store: Store, kiosk_id: str) -> int | None:
    try:
        rows = store.query("SELECT last_import_ns FROM kiosks WHERE kiosk_id = ?", (kiosk_id,))
    except FieldtriageError:  # a schema without the column: no upper bound
        return None
    value = rows[0][0] if rows else None
    return value if _is_int(value) and value > 0 else None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
