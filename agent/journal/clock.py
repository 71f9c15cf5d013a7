"""The time fields the journal adds to every record: wall clock, monotonic clock, boot id, whether the
wall clock can be trusted, and where its time came from.

Most Pis have no battery-backed clock, so the wall time of a record written before NTP ran can be
wrong by years; the monotonic time and boot id still order records within one boot, and let the
station correct the times of a boot it has one reference point for (station/clock_estimate.py).

``clock_source`` says what the wall clock rests on, best first:

* ``ntp``: the kernel says the clock is synchronised (adjtimex(2) does not return ``TIME_ERROR``,
  which it does while ``STA_UNSYNC`` is set; no subprocess on the hot path);
* ``rtc``: a hardware clock (``/sys/class/rtc/rtc0``, read through sysfs, no device opened) with a
  plausible time (``RTC_PLAUSIBLE``: a battery-less RTC restarts in 1970 or 2000) that the system
  clock agrees with (``rtc_agrees``: within 10 s plus 200 ppm of the time since boot);
* ``sync_stick``: neither, but in this boot the clock was stepped forward to the station's signed time
  from a sync stick (agent/daemon/clock_step.py; its marker ``STEP_MARKER``): no earlier than the
  true time of the step, a lower bound, not a synchronised clock;
* ``none``: nothing; the wall clock may be anything.

``clock_synchronised`` is true for ``ntp`` and ``rtc``, false for ``sync_stick`` and for ``none``
when the kernel says unsynchronised, null when it cannot be asked. Segment headers keep the four
fields of journal format 1 and 2 (``HEADER_TIME_FIELDS``); records carry all five.

Example::

    >>> reader = ClockReader(boot_id="d84c9273-c209-4274-ae12-e0398610ec60", synchronised=lambda: False)
    >>> stamp = reader.now()
    >>> sorted(stamp)
    ['boot_id', 'clock_source', 'clock_synchronised', 'monotonic_ns', 'wall_ns']
    >>> stamp["clock_source"], stamp["clock_synchronised"]
    ('none', False)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
RTC_PATH = Path("/sys/class/rtc/rtc0")
# fieldtriage-clock.service's folder (agent/daemon/clock_step.py; made at boot by systemd-tmpfiles):
# its answers and, once it stepped the clock, the step marker; /run is emptied at every boot, and the
# marker names its boot too
CLOCK_HELPER_FOLDER = Path("/run/fieldtriage-clock")
STEP_MARKER = CLOCK_HELPER_FOLDER / "step.json"
TIME_ERROR = 5
TIMEX_BUFFER_BYTES = 512  # larger than struct timex on every ABI; modes=0 only reads
RTC_PLAUSIBLE = (1_735_689_600, 4_102_444_800)  # 2025-01-01 .. 2100-01-01 UTC, Unix seconds
RTC_AGREEMENT_NS = 10 * 10**9  # RTC seconds are whole; sysfs reads take a moment
RTC_DRIFT_PPM = 200  # a cheap RTC crystal (20-100 ppm) against an undisciplined system clock
MAX_MARKER_BYTES = 4096
HEADER_TIME_FIELDS = ("wall_ns", "monotonic_ns", "boot_id", "clock_synchronised")
RECORD_ONLY_TIME_FIELDS = ("clock_source",)  # not in segment headers

ClockSource = Literal["ntp", "rtc", "sync_stick", "none"]
CLOCK_SOURCES: tuple[ClockSource, ...] = ("ntp", "rtc", "sync_stick", "none")


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The kernel's random id of this boot, or "" where there is none."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def header_time(stamp: Any) -> Any:
    """The time fields a segment header holds (its ``created``): the four of formats 1 and 2, so
    ``clock_source`` is left out (anything else is passed on as it is: a test's odd clock)."""
    if isinstance(stamp, Mapping):
        return {name: value for name, value in stamp.items() if name not in RECORD_ONLY_TIME_FIELDS}
    return stamp


def _load_adjtimex() -> Callable[[], bool | None] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    adjtimex.argtypes = [ctypes.c_void_p]
    adjtimex.restype = ctypes.c_int
    buffer = ctypes.create_string_buffer(TIMEX_BUFFER_BYTES)

    def synchronised() -> bool | None:
        ctypes.memset(buffer, 0, TIMEX_BUFFER_BYTES)
        state = adjtimex(buffer)
        if state < 0:
            return None
        return bool(state != TIME_ERROR)

    return synchronised


def kernel_clock_synchronised() -> bool | None:
    """The kernel's word on this machine's clock (adjtimex(2)): None when it cannot be asked."""
    probe = _load_adjtimex()
    return None if probe is None else probe()


def read_rtc_seconds(folder: Path = RTC_PATH) -> int | None:
    """The hardware clock's time in Unix seconds (sysfs ``since_epoch``), None without one (or when
    it cannot be read: a battery-less RTC that never was set answers EINVAL)."""
    try:
        text = (folder / "since_epoch").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and len(text) < 20 else None


def rtc_agrees(rtc_seconds: int | None, wall_ns: int, monotonic_ns: int) -> bool:
    """True when the RTC's time is plausible and the system clock agrees with it."""
    if rtc_seconds is None or not RTC_PLAUSIBLE[0] <= rtc_seconds < RTC_PLAUSIBLE[1]:
        return False
    allowed = RTC_AGREEMENT_NS + max(0, monotonic_ns) * RTC_DRIFT_PPM // 1_000_000
    return abs(wall_ns - rtc_seconds * 10**9) <= allowed


def read_step_marker(path: Path, boot_id: str) -> dict[str, Any] | None:
    """The last clock step of this boot the clock helper noted, or None (no step, another boot, or
    a marker that is not one)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MARKER_BYTES + 1)
        marker = json.loads(data) if len(data) <= MAX_MARKER_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("boot_id") != boot_id or not boot_id:
        return None
    return marker


class StepMarker:
    """Whether the clock helper stepped the clock in this boot; reads the marker again only when the
    file changes (one stat per record)."""

    def __init__(self, boot_id: str, path: Path = STEP_MARKER) -> None:
        self.boot_id, self.path = boot_id, path
        self._seen: tuple[int, int] | None = None
        self._stepped = False

    def __call__(self) -> bool:
        try:
            info = os.stat(self.path)
        except OSError:
            self._seen, self._stepped = None, False
            return False
        seen = (info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            self._seen = seen
            self._stepped = read_step_marker(self.path, self.boot_id) is not None
        return self._stepped


class ClockReader:
    """Reads the time fields. Every probe may be injected (tests, other platforms): ``synchronised``
    (the kernel's word), ``rtc`` (the RTC's Unix seconds or None), ``stepped`` (a sync stick stepped
    the clock in this boot). A reader given ``synchronised`` reads no RTC and no step marker unless
    it is given those too: a test describes the whole clock."""

    def __init__(
        self,
        boot_id: str | None = None,
        synchronised: Callable[[], bool | None] | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        rtc: Callable[[], int | None] | None = None,
        stepped: Callable[[], bool] | None = None,
    ) -> None:
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        real = synchronised is None
        self._synchronised = synchronised or _load_adjtimex() or (lambda: None)
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        self._rtc = rtc or (read_rtc_seconds if real else lambda: None)
        self._stepped = stepped or (StepMarker(self.boot_id) if real else lambda: False)

    def state(self, wall_ns: int, monotonic_ns: int) -> tuple[bool | None, ClockSource]:
        """(``clock_synchronised``, ``clock_source``) for a clock that reads ``wall_ns`` now."""
        kernel = self._synchronised()
        if kernel:
            return True, "ntp"
        if rtc_agrees(self._rtc(), wall_ns, monotonic_ns):
            return True, "rtc"
        if self._stepped():
            return False, "sync_stick"
        return kernel, "none"

    def now(self) -> dict[str, Any]:
        """``clock_synchronised`` is None when the kernel cannot say (and nothing else vouches)."""
        wall, monotonic = self._wall_ns(), self._monotonic_ns()
        synchronised, source = self.state(wall, monotonic)
        return {
            "wall_ns": wall,
            "monotonic_ns": monotonic,
            "boot_id": self.boot_id,
            "clock_synchronised": synchronised,
            "clock_source": source,
        }
