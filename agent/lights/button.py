"""The acknowledge button: a press silences a priority alarm (or a match's beeps); the lights stay.

An ``AckButton`` only reports presses: ``watch(on_press)`` names what to call, from whatever thread
the button's driver runs in; the daemon decides what a press silences (``BayLights.silence``) and
journals it. A bay may have its own button (``[[bays]] button = N``: it silences that bay) and the
kiosk one for every bay (``[lights] button = N``); both are wired between the GPIO pin and ground,
with the pin's pull-up on, so a press reads low.

Backends: ``GpioButton`` (a gpiozero ``Button``, any pin factory: lgpio on a Pi and on the system
test's gpio-sim lines, the mock factory in tests), ``FakeButton`` (tests press it). A pin that
cannot be claimed is ``LightsUnavailable``, one line naming it, as for the lights.

Example::

    >>> button = FakeButton()
    >>> presses = []
    >>> button.watch(lambda: presses.append("pressed"))
    >>> button.press()
    >>> presses
    ['pressed']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agent.lights.bay import LightsUnavailable, _one_line

# the key of the kiosk's one button (lights.button) among the buttons keyed by bay name: no bay
# can be called that (a bay's name is never empty)
KIOSK_BUTTON = ""


class AckButton(Protocol):
    def watch(self, on_press: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


class GpioButton:
    """A push button between ``pin`` and ground through gpiozero (the pin's pull-up on)."""

    def __init__(self, pin: int, *, pin_factory: Any, role: str = "button") -> None:
        from gpiozero import Button

        try:
            self.device: Any = Button(pin, pull_up=True, pin_factory=pin_factory)
        except Exception as err:  # GPIOPinInUse, PinInvalidPin, PinFixedPull, OSError...
            raise LightsUnavailable(f"GPIO {pin}", f"GPIO {pin} ({role}): {_one_line(err)}") from err

    def watch(self, on_press: Callable[[], None]) -> None:
        self.device.when_pressed = lambda: on_press()  # (gpiozero would pass a one-argument call the device)

    def close(self) -> None:
        self.device.close()  # (its callback goes with it)


class FakeButton:
    """A button a test presses (``press()`` calls what ``watch`` named, in the caller's thread)."""

    def __init__(self) -> None:
        self._on_press: Callable[[], None] | None = None

    def watch(self, on_press: Callable[[], None]) -> None:
        self._on_press = on_press

    def press(self) -> None:
        if self._on_press is not None:
            self._on_press()

    def close(self) -> None:
        self._on_press = None
