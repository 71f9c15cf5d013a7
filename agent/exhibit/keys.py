"""A barcode scanner's key events as labels: a USB HID scanner is a keyboard that types its label.

``KeyDecoder`` takes the evdev key events of one keyboard (Linux key codes, which do not depend on
a layout; the scanner is set to the US layout, as they are by default) and returns each label when
Enter ends it. Letters, digits, space and the symbols of a US keyboard, with Shift and Caps Lock;
the keypad's digits and symbols. Anything else in a label (Ctrl, Alt or Meta held, a function key,
Backspace, Tab, a key no table has) spoils it: the label is dropped at its Enter, with a log line,
and so is a label longer than ``MAX_LABEL`` characters or one of spaces only. A label whose keys
stop for ``GAP_SECONDS`` is abandoned (a scan cut off, a partial label never joins the next).
Key repeats (value 2) are ignored: a scanner never holds a key.

Example::

    >>> decoder = KeyDecoder("scanner")
    >>> shift, e, x, one, enter = 42, 18, 45, 2, 28
    >>> events = [(shift, 1), (e, 1), (e, 0), (x, 1), (x, 0), (shift, 0), (one, 1), (one, 0), (enter, 1)]
    >>> [decoder.feed(code, value, at=0.0) for code, value in events][-1]
    'EX1'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from filters.errors import printable

log = logging.getLogger(__name__)

MAX_LABEL = 64  # characters of an exhibit reference
GAP_SECONDS = 1.0  # a scanner types a label in milliseconds; a pause this long ends a partial label
SHOWN = 24  # characters of a dropped label shown in the log

# Linux key codes (include/uapi/linux/input-event-codes.h) of a US keyboard's rows: plain, shifted
_ROWS = (
    (2, "1234567890-=", "!@#$%^&*()_+"),
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),
    (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
)
KEYS: dict[int, tuple[str, str]] = {
    code + i: (plain[i], shifted[i]) for code, plain, shifted in _ROWS for i in range(len(plain))
}
KEYS[57] = (" ", " ")  # KEY_SPACE
# the keypad (a scanner set to "keypad digits"): the same character with or without Shift
KEYPAD = {55: "*", 71: "7", 72: "8", 73: "9", 74: "-", 75: "4", 76: "5", 77: "6", 78: "+", 79: "1",
          80: "2", 81: "3", 82: "0", 83: ".", 98: "/"}  # fmt: skip
KEYS.update({code: (ch, ch) for code, ch in KEYPAD.items()})
ENTER = frozenset((28, 96))  # KEY_ENTER, KEY_KPENTER
SHIFT = frozenset((42, 54))  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
CAPS_LOCK = 58
# Ctrl, Alt, AltGr, Meta: a label typed with one held is not a label
OTHER_MODIFIERS = frozenset((29, 97, 56, 100, 125, 126))
IGNORED = frozenset((69, 70))  # Num Lock, Scroll Lock: state keys a scanner may send first


@dataclass
class KeyDecoder:
    """Key events of one keyboard -> labels; ``name`` is the scanner's, for the log."""

    name: str
    max_label: int = MAX_LABEL
    gap_seconds: float = GAP_SECONDS
    shift: set[int] = field(default_factory=set)
    modifiers: set[int] = field(default_factory=set)
    caps_lock: bool = False
    typed: list[str] = field(default_factory=list)
    spoiled: str = ""  # why the label being typed will be dropped
    last_key: float | None = None
    dropped: int = 0

    def feed(self, code: int, value: int, at: float) -> str | None:
        """One EV_KEY event (``value`` 1 down, 0 up, 2 repeat) at ``at`` seconds (the event's own
        time); the label when this event is the Enter that ends one."""
        if value == 0:
            self.shift.discard(code)
            self.modifiers.discard(code)
            return None
        if value != 1:
            return None
        if self.last_key is not None and at - self.last_key >= self.gap_seconds and self._started():
            self._drop(f"no key for {at - self.last_key:.1f} s before its end")
        self.last_key = at
        if code in SHIFT:
            self.shift.add(code)
        elif code in OTHER_MODIFIERS:
            self.modifiers.add(code)
        elif code == CAPS_LOCK:
            self.caps_lock = not self.caps_lock
        elif code in ENTER:
            return self._end()
        elif code in IGNORED:
            pass
        elif self.modifiers:
            self._spoil("a key typed with Ctrl, Alt or Meta held")
        elif code not in KEYS:
            self._spoil(f"key code {code}, which is no character")
        else:
            self._type(code)
        return None

    def reset(self) -> None:
        """The keyboard went away: a partial label is abandoned, held keys released."""
        if self._started():
            self._drop("the scanner went away before its end")
        self.shift.clear()
        self.modifiers.clear()
        self.last_key = None

    def _type(self, code: int) -> None:
        plain, shifted = KEYS[code]
        upper = bool(self.shift)
        if plain.isalpha() and self.caps_lock:
            upper = not upper
        if len(self.typed) >= self.max_label:
            self._spoil(f"longer than {self.max_label} characters")
            return
        self.typed.append(shifted if upper else plain)

    def _spoil(self, reason: str) -> None:
        self.spoiled = self.spoiled or reason

    def _started(self) -> bool:
        return bool(self.typed or self.spoiled)

    def _end(self) -> str | None:
        if self.spoiled:
            self._drop(self.spoiled)
            return None
        label = "".join(self.typed).strip()
        if self.typed and not label:
            self._drop("spaces only")
            return None
        self.typed = []
        return label or None  # Enter alone: nothing

    def _drop(self, reason: str) -> None:
        text = "".join(self.typed)
        shown = printable(text[:SHOWN]) + ("..." if len(text) > SHOWN else "")
        log.warning("scanner %s: label dropped (%s): %r", self.name, reason, shown)
        self.dropped += 1
        self.typed, self.spoiled = [], ""
