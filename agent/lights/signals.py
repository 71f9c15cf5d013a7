"""The signal table: what each state of a bay looks like, in one place (docs/operations.md shows it).

Each bay has three lights stacked like a traffic light, red on top, amber in the middle, green at the
bottom, and optionally a buzzer. Every signal differs in position and pattern, not only in colour,
so an officer with red-green colour blindness reads them as surely as anyone:

| signal | top (red) | middle (amber) | bottom (green) | buzzer |
|---|---|---|---|---|
| ready | off | off | 0.1 s flash every 3 s | off |
| ready, a filter expires soon | off | 0.1 s flash, 0.4 s after green's | 0.1 s flash every 3 s | off |
| scanning | off | blinks: 1/s, 2/s past half, 4/s past 90 % | off | off |
| scanning, priority hit found | on | blinks as scanning | off | the priority alarm, as below |
| priority match | on | off | off | priority alarm: 4 quick beeps (0.1 s) every 1.5 s, up to 2 min |
| priority match, not journaled | on | on | off | 4 quick beeps, then 1 long (1 s), every 3 s, up to 2 min |
| match (non-priority sets only) | blinks slowly (1 s on, 1 s off) | off | off | 2 slow beeps per 6 s, 1 min |
| no match | off | off | on | 1 short beep (0.1 s) |
| could not check | off | on | off | long-short (0.6 s, 0.15 s), 3 times, 3 s apart |
| no valid filter / fault | alternates with amber, 2/s | alternates with red | off | 1 long beep (1 s) |
| phone locked or charging only | off | 2 short flashes every 2 s | off | 2 short beeps |
| iPhone not trusted | off | 3 short flashes every 2 s | off | 2 short beeps |
| sync stick in use | off | alternates with green, 1/s | alternates with amber | off |
| sync done | off | off | 2 short flashes every 2 s | 2 short beeps |
| exhibit label scanned (idle bays, once) | off | off | 3 quick flashes (0.1 s) | 1 short beep |

Each verdict sounds its own rhythm, so that an officer in the next room knows it without looking: the
priority alarm's bursts of quick beeps repeat until the acknowledge button is pressed, the device is
removed, or 2 minutes have passed; a match's two slow beeps repeat for a minute; no match is one
short beep; could not check is a long and a short beep, three times; the fault one long beep. The
acknowledge button (``agent.lights.button``: a bay's own, or the kiosk's one) silences a priority
alarm or a match's beeps (``SILENCEABLE``); the lights stay as they are, and the silencing is
journaled. A priority alarm silenced while the scan goes on stays silent for that scan's priority
match; any other new signal sounds again.

Example::

    >>> levels_at(Signal.NO_MATCH, 12.0)
    Levels(red=False, amber=False, green=True, buzzer=False)
    >>> [levels_at(Signal.SCANNING, t, progress=0.95).amber for t in (0.1, 0.2)]
    [True, False]
    >>> [levels_at(Signal.PRIORITY_MATCH, t).buzzer for t in (0.05, 0.15, 1.55, 118.55, 120.05)]
    [True, False, True, True, False]
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


class Signal(enum.Enum):
    OFF = "off"
    READY = "ready"
    READY_EXPIRING = "ready_filter_expiring"  # ready, but a filter in use expires within the warning days
    SCANNING = "scanning"
    SCANNING_PRIORITY = "scanning_priority_hit"
    PRIORITY_MATCH = "priority_match"
    PRIORITY_MATCH_UNRECORDED = "priority_match_unrecorded"  # the record could not be written
    MATCH = "match"
    NO_MATCH = "no_match"
    INCOMPLETE = "could_not_check"
    FAULT = "fault"
    PHONE_UNLOCK = "phone_unlock"  # the officer can act: unlock, choose File transfer
    PHONE_TRUST = "phone_trust"  # the officer can act: unlock the iPhone, tap Trust
    SYNC = "sync"
    SYNC_DONE = "sync_done"
    EXHIBIT_SCANNED = "exhibit_scanned"  # a label was read: the next device plugged in takes it


class Levels(NamedTuple):
    red: bool = False
    amber: bool = False
    green: bool = False
    buzzer: bool = False


_EPSILON = 1e-9


@dataclass(frozen=True)
class Sound:
    """A buzzer pattern: ``beeps`` (start, length) within each ``period`` s, repeated for ``lasts`` s
    (one period: once)."""

    beeps: tuple[tuple[float, float], ...]
    period: float
    lasts: float

    def at(self, t: float) -> bool:
        if not 0.0 <= t < self.lasts:
            return False
        cycle = t % self.period + _EPSILON  # 0.3 is not below 0.2 + 0.1 in binary: beeps are as written
        return any(start <= cycle < start + length for start, length in self.beeps)


ALARM_SECONDS = 120.0  # a priority alarm repeats until acknowledged, the device removed, or this
_QUICK4 = ((0.0, 0.1), (0.2, 0.1), (0.4, 0.1), (0.6, 0.1))
SOUNDS = {
    Signal.SCANNING_PRIORITY: Sound(_QUICK4, 1.5, ALARM_SECONDS),
    Signal.PRIORITY_MATCH: Sound(_QUICK4, 1.5, ALARM_SECONDS),
    Signal.PRIORITY_MATCH_UNRECORDED: Sound((*_QUICK4, (1.2, 1.0)), 3.0, ALARM_SECONDS),
    Signal.MATCH: Sound(((0.0, 0.4), (0.8, 0.4)), 6.0, 60.0),
    Signal.NO_MATCH: Sound(((0.0, 0.1),), 1.0, 1.0),
    Signal.INCOMPLETE: Sound(((0.0, 0.6), (0.8, 0.15)), 3.0, 9.0),
    Signal.FAULT: Sound(((0.0, 1.0),), 1.0, 1.0),
}
# what the acknowledge button silences (the lights stay as they are)
SILENCEABLE = frozenset(
    {Signal.SCANNING_PRIORITY, Signal.PRIORITY_MATCH, Signal.PRIORITY_MATCH_UNRECORDED, Signal.MATCH}
)


def sounding(signal: Signal, t: float) -> bool:
    """Whether ``signal``'s sound still has beeps to come ``t`` seconds after it began."""
    sound = SOUNDS.get(signal)
    return sound is not None and t < sound.lasts


def _blink(t: float, period: float, on: float) -> bool:
    return (t % period) < on


def _beeps(t: float, count: int, on: float = 0.15, off: float = 0.15) -> bool:
    """``count`` beeps at the start of a signal, then silence."""
    return t < count * (on + off) and _blink(t, on + off, on)


def _scan_period(progress: float | None) -> float:
    if progress is None or progress < 0.5:
        return 1.0
    return 0.5 if progress < 0.9 else 0.25


def levels_at(signal: Signal, t: float, progress: float | None = None) -> Levels:
    """The lights ``t`` seconds after ``signal`` began (a pure function: tests step time)."""
    if signal is Signal.READY:
        return Levels(green=_blink(t, 3.0, 0.1))
    if signal is Signal.READY_EXPIRING:  # ready's green flash, then an amber one
        return Levels(amber=0.4 <= t % 3.0 < 0.5, green=_blink(t, 3.0, 0.1))
    if signal in (Signal.SCANNING, Signal.SCANNING_PRIORITY):
        period = _scan_period(progress)
        amber = _blink(t, period, period / 2)
        if signal is Signal.SCANNING:
            return Levels(amber=amber)
        return Levels(red=True, amber=amber, buzzer=SOUNDS[signal].at(t))
    if signal is Signal.PRIORITY_MATCH:
        return Levels(red=True, buzzer=SOUNDS[signal].at(t))
    if signal is Signal.PRIORITY_MATCH_UNRECORDED:  # red as a priority match, amber steady: a fault
        return Levels(red=True, amber=True, buzzer=SOUNDS[signal].at(t))
    if signal is Signal.MATCH:
        return Levels(red=_blink(t, 2.0, 1.0), buzzer=SOUNDS[signal].at(t))
    if signal is Signal.NO_MATCH:
        return Levels(green=True, buzzer=SOUNDS[signal].at(t))
    if signal is Signal.INCOMPLETE:
        return Levels(amber=True, buzzer=SOUNDS[signal].at(t))
    if signal is Signal.FAULT:
        red = _blink(t, 0.5, 0.25)
        return Levels(red=red, amber=not red, buzzer=SOUNDS[signal].at(t))
    if signal in (Signal.PHONE_UNLOCK, Signal.PHONE_TRUST):
        flashes = 2 if signal is Signal.PHONE_UNLOCK else 3
        cycle = t % 2.0
        return Levels(amber=cycle < flashes * 0.3 and _blink(cycle, 0.3, 0.15), buzzer=_beeps(t, 2))
    if signal is Signal.SYNC:
        green = _blink(t, 1.0, 0.5)
        return Levels(amber=not green, green=green)
    if signal is Signal.SYNC_DONE:
        return Levels(green=_blink(t % 2.0, 0.4, 0.2) and (t % 2.0) < 0.8, buzzer=_beeps(t, 2))
    if signal is Signal.EXHIBIT_SCANNED:  # once, 0.6 s: then the bay's idle signal again
        tenths = int(t * 10 + 1e-9)  # on at 0, 0.2 and 0.4 s, 0.1 s each (t * 10 exact in tenths)
        return Levels(green=tenths < 6 and tenths % 2 == 0, buzzer=t < 0.15)
    return Levels()
