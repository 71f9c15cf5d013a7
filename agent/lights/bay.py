"""Lights of one bay: a signal shown through a backend, rendered by a ticker from the signal table.

A ``LightsBackend`` only switches outputs (``set(levels)``); ``BayLights`` decides what they show:
it renders ``signals.levels_at`` for the current signal and calls the backend when a level changes.
One ``LightsTicker`` thread drives every bay (20 steps a second); tests drive ``render(now)``
themselves with a stepped clock, so pin histories are exact. ``silence()`` is what the acknowledge
button does (``agent.lights.button``): the buzzer off, the lights as they were.

Backends: ``GpioLights`` (gpiozero, any pin factory: lgpio on a Pi 5, the mock factory in tests),
``TerminalLights`` (the same states drawn in a terminal, for ``make demo``), ``RecordingLights``.
A machine without GPIO, or a pin that cannot be driven, is ``LightsUnavailable`` (one line: what was
tried and why it failed), never gpiozero's exception.

Example::

    >>> recorder = RecordingLights()
    >>> bay = BayLights("front", recorder, clock=lambda: 0.0)
    >>> bay.show(Signal.NO_MATCH)
    >>> bay.render(0.0)
    >>> recorder.history[-1]  # green, and the verdict's one short beep
    Levels(red=False, amber=False, green=True, buzzer=True)
    >>> bay.render(2.0)
    >>> recorder.history[-1]
    Levels(red=False, amber=False, green=True, buzzer=False)
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from agent.lights.signals import SILENCEABLE, Levels, Signal, levels_at, sounding
from filters.errors import FieldtriageError, printable

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05


class LightsUnavailable(FieldtriageError):
    """GPIO outputs that cannot be driven here: no pin factory works, or a pin cannot be claimed."""


def _one_line(err: object) -> str:
    return printable(" ".join(str(err).split()) or type(err).__name__)


def gpio_pin_factory(chip: int | None = None, board_revision: str = "") -> Any:
    """gpiozero's default pin factory (lgpio, rpigpio, pigpio, native, or ``GPIOZERO_PIN_FACTORY``);
    with ``chip`` or ``board_revision``, lgpio on that chip, numbered as that Raspberry Pi's header.

    Where none works (a machine without GPIO) gpiozero warns once per factory it tried and raises
    ``BadPinFactory``; here that is one ``LightsUnavailable`` listing every factory tried and why.
    """
    if chip is not None or board_revision:
        return _lgpio_factory(chip, board_revision)
    from gpiozero import Device
    from gpiozero.exc import PinFactoryFallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Device.ensure_pin_factory()
        # BadPinFactory, PinUnknownPi, ImportError, OSError: whatever a factory raises
        except Exception as err:
            chosen = os.environ.get("GPIOZERO_PIN_FACTORY")
            if chosen is not None:
                raise LightsUnavailable(
                    "gpio", f"GPIOZERO_PIN_FACTORY={printable(chosen)}: {_one_line(err)}"
                ) from err
            tried = [
                _one_line(w.message).removeprefix("Falling back from ")
                for w in caught
                if isinstance(w.message, PinFactoryFallback)
            ]
            raise LightsUnavailable(
                "gpio", f"no GPIO pin factory works here (tried {'; '.join(tried) or _one_line(err)})"
            ) from err
    for warning in caught:  # a factory found after others failed (the slow native one, say)
        log.warning("gpio: %s", _one_line(warning.message))
    return Device.pin_factory


def _lgpio_factory(chip: int | None, board_revision: str) -> Any:
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
    except ImportError as err:
        raise LightsUnavailable("gpio", f"lights.gpio_chip needs the lgpio module: {_one_line(err)}") from err
    except OSError as err:  # lgpio makes FIFOs in the working folder (or LG_WD) as it is imported
        raise LightsUnavailable(
            "gpio", f"lgpio cannot start: {_one_line(err)} (set LG_WD to a writable folder)"
        ) from err

    class BoardFactory(LGPIOFactory):  # type: ignore[misc]
        """lgpio on a chosen chip; the header's numbering from ``board_revision`` when given."""

        def _get_revision(self) -> int:
            if board_revision:
                return int(board_revision, 16)
            revision: int = super()._get_revision()
            return revision

    try:
        return BoardFactory(chip=chip)
    except Exception as err:  # lgpio.error (no such chip, no access), PinUnknownPi
        where = f"/dev/gpiochip{chip}" if chip is not None else "gpio"
        raise LightsUnavailable(where, f"{where}: {_one_line(err).strip(chr(39))}") from err


class LightsBackend(Protocol):
    """Switches outputs; ``label`` names the signal shown (only a terminal uses it)."""

    def set(self, levels: Levels, label: str = "") -> None: ...

    def close(self) -> None: ...


class RecordingLights:
    """Keeps every level change (tests, and a kiosk built without lights)."""

    def __init__(self) -> None:
        self.history: list[Levels] = []

    def set(self, levels: Levels, label: str = "") -> None:
        self.history.append(levels)

    def close(self) -> None:
        pass


class GpioLights:
    """Three LEDs and an optional buzzer through gpiozero, with the pin factory injected."""

    def __init__(
        self,
        red: int,
        amber: int,
        green: int,
        buzzer: int | None = None,
        *,
        active_high: bool = True,
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import LED, Buzzer

        self.outputs: list[Any] = []
        self.buzzer: Any = None
        if pin_factory is None:
            pin_factory = gpio_pin_factory()
        roles = [("red", red, LED), ("amber", amber, LED), ("green", green, LED), ("buzzer", buzzer, Buzzer)]
        for role, pin, kind in roles:
            if pin is None:
                continue
            try:
                device = kind(pin, active_high=active_high, pin_factory=pin_factory)
            except Exception as err:  # GPIOPinInUse, PinInvalidPin, OSError (no /dev/gpiochip0 access)...
                self.close()
                raise LightsUnavailable(f"GPIO {pin}", f"GPIO {pin} ({role}): {_one_line(err)}") from err
            if role == "buzzer":
                self.buzzer = device
            else:
                self.outputs.append(device)

    def set(self, levels: Levels, label: str = "") -> None:
        for output, level in zip(self.outputs, (levels.red, levels.amber, levels.green), strict=True):
            if output.is_lit != level:
                output.value = level
        if self.buzzer is not None and self.buzzer.is_active != levels.buzzer:
            self.buzzer.value = levels.buzzer

    def close(self) -> None:
        for device in [*self.outputs, *([self.buzzer] if self.buzzer else [])]:
            device.off()
            device.close()


class TerminalLights:
    """Draws a bay's lights as a terminal line: ``lights [front] (R)  .   .  BEEP  priority match``.

    On a terminal the line is redrawn in place as the lights blink, and a new line starts when the
    signal changes; elsewhere (a log) only signal changes are printed.
    """

    def __init__(self, name: str, stream: TextIO = sys.stdout, live: bool | None = None) -> None:
        self.name = name
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.colour = self.live
        self.lock = threading.Lock()
        self.label: str | None = None

    def _lamp(self, on: bool, letter: str, code: str) -> str:
        if not on:
            return " . "
        return f"\033[{code}m({letter})\033[0m" if self.colour else f"({letter})"

    def set(self, levels: Levels, label: str = "") -> None:
        text = " ".join(
            (
                self._lamp(levels.red, "R", "41;97"),
                self._lamp(levels.amber, "A", "43;30"),
                self._lamp(levels.green, "G", "42;30"),
                "BEEP" if levels.buzzer else "    ",
                label.replace("_", " "),
            )
        )
        with self.lock:
            changed = label != self.label
            self.label = label
            if self.live:
                self.stream.write(("\n" if changed else "") + f"\r  lights [{self.name}] {text}\033[K")
            elif changed:
                self.stream.write(f"  lights [{self.name}] {text}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            with self.lock:
                self.stream.write("\n")
                self.stream.flush()


class BayLights:
    """The signal a bay shows, and what it has shown (for the status file and the journal).

    ``silence()`` (the acknowledge button) turns the buzzer off for the signal shown, the lights as
    they were; a new signal sounds again, except a priority match after a silenced "scanning,
    priority hit found" (the alarm the officer has already acknowledged).
    """

    def __init__(
        self, name: str, backend: LightsBackend, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.backend = backend
        self.clock = clock
        self.signal = Signal.OFF
        self.progress: float | None = None
        self.since = clock()
        self.shown: list[str] = []
        self.silenced = False  # the acknowledge button silenced the signal shown
        self._levels: Levels | None = None
        self._lock = threading.Lock()

    def show(self, signal: Signal, progress: float | None = None) -> None:
        with self._lock:
            if signal is not self.signal:
                acknowledged = self.signal is Signal.SCANNING_PRIORITY and signal is Signal.PRIORITY_MATCH
                self.silenced = self.silenced and acknowledged
                self.signal = signal
                self.since = self.clock()
                self.shown.append(signal.value)
            self.progress = progress

    def silence(self, now: float | None = None) -> Signal | None:
        """The acknowledge button: silence the signal shown when it is a priority alarm or a match's
        beeps still to come (``SILENCEABLE``); the signal silenced, or None when there was nothing
        to silence (already silenced, already over, another signal)."""
        with self._lock:
            moment = self.clock() if now is None else now
            if (
                self.silenced
                or self.signal not in SILENCEABLE
                or not sounding(self.signal, moment - self.since)
            ):
                return None
            self.silenced = True
            self._render(moment)  # the buzzer off at once, not at the next tick
            return self.signal

    def render(self, now: float | None = None) -> None:
        with self._lock:
            self._render(self.clock() if now is None else now)

    def _render(self, moment: float) -> None:
        levels = levels_at(self.signal, moment - self.since, self.progress)
        if self.silenced:
            levels = levels._replace(buzzer=False)
        if levels != self._levels:
            self._levels = levels
            self.backend.set(levels, self.signal.value)

    def close(self) -> None:
        with self._lock:
            self.signal = Signal.OFF
            self._levels = Levels()
            self.backend.set(Levels(), Signal.OFF.value)
            self.backend.close()


class LightsTicker:
    """One thread that renders every bay; ``close()`` stops it."""

    def __init__(self, bays: list[BayLights], tick: float = TICK_SECONDS) -> None:
        self.bays = bays
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lights", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            for bay in self.bays:
                bay.render()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
