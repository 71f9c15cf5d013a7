"""The time fields the journal adds to every record: wall clock, monotonic clock, boot id, and
whether the wall clock was synchronised.

Most Pis have no battery-backed clock, so the wall time of a record written before NTP ran can be
wrong by years; the monotonic time and boot id still order records within one boot. Whether the
clock is synchronised comes from adjtimex(2) (no subprocess on the hot path): it returns
``TIME_ERROR`` while the kernel's ``STA_UNSYNC`` flag is set.

Example::

    >>> stamp = ClockReader(boot_id="d84c9273-c209-4274-ae12-e0398610ec60").now()
    >>> sorted(stamp)
    ['boot_id', 'clock_synchronised', 'monotonic_ns', 'wall_ns']
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
TIME_ERROR = 5
TIMEX_BUFFER_BYTES = 512  # larger than struct timex on every ABI; modes=0 only reads


def read_boot_id(path: Path = BOOT_ID_PATH) -> str:
    """The kernel's random id of this boot, or "" where there is none."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


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


class ClockReader:
    """Reads the time fields; ``synchronised`` may be injected (tests, other platforms)."""

    def __init__(
        self,
        boot_id: str | None = None,
        synchronised: Callable[[], bool | None] | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        self._synchronised = synchronised or _load_adjtimex() or (lambda: None)
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns

    def now(self) -> dict[str, Any]:
        """``clock_synchronised`` is None when the kernel cannot say."""
        return {
            "wall_ns": self._wall_ns(),
            "monotonic_ns": self._monotonic_ns(),
            "boot_id": self.boot_id,
            "clock_synchronised": self._synchronised(),
        }
