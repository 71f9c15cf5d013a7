"""Lights: whole pin-state sequences through gpiozero's mock pins, with a stepped clock."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.lights.bay import BayLights, GpioLights, LightsUnavailable, RecordingLights, gpio_pin_factory
from agent.lights.signals import Levels, Signal, levels_at

RED, AMBER, GREEN, BUZZER = 17, 27, 22, 23


def pin_states(factory: MockFactory, pin: int) -> list[bool]:
    return [bool(state.state) for state in factory.pin(pin).states]


def drive(bay: BayLights, clock: list[float], until: float, step: float = 0.05) -> None:
    while clock[0] < until - 1e-9:
        clock[0] = round(clock[0] + step, 6)
        bay.render(clock[0])


@pytest.fixture
def gpio_bay() -> tuple[BayLights, MockFactory, list[float]]:
    factory = MockFactory()
    clock = [0.0]
    bay = BayLights(
        "front", GpioLights(RED, AMBER, GREEN, BUZZER, pin_factory=factory), clock=lambda: clock[0]
    )
    return bay, factory, clock


def test_priority_match_sequence(gpio_bay: tuple[BayLights, MockFactory, list[float]]) -> None:
    bay, factory, clock = gpio_bay
    bay.show(Signal.PRIORITY_MATCH)
    drive(bay, clock, 2.0)
    # whole histories: the initial low state, then what the signal table says and nothing else
    assert pin_states(factory, RED) == [False, True]
    assert pin_states(factory, AMBER) == [False]
    assert pin_states(factory, GREEN) == [False]
    # the priority alarm: 4 quick beeps every 1.5 s (0.0, 0.2, 0.4, 0.6, then 1.5, 1.7, 1.9)
    assert pin_states(factory, BUZZER) == [False] + [True, False] * 7


def test_scan_then_no_match_never_lights_red(gpio_bay: tuple[BayLights, MockFactory, list[float]]) -> None:
    bay, factory, clock = gpio_bay
    bay.show(Signal.SCANNING, 0.1)
    drive(bay, clock, 2.0)  # 1 blink a second below half way
    bay.show(Signal.NO_MATCH)
    drive(bay, clock, 3.0)
    assert pin_states(factory, RED) == [False]
    assert pin_states(factory, AMBER) == [False, True, False, True, False, True, False]
    assert pin_states(factory, GREEN) == [False, True]
    assert pin_states(factory, BUZZER) == [False, True, False], "silent scan, one short beep at no match"


def test_scanning_blinks_faster_with_progress() -> None:
    def changes(progress: float) -> int:
        levels = [levels_at(Signal.SCANNING, t / 100, progress).amber for t in range(200)]
        return sum(1 for a, b in itertools.pairwise(levels) if a != b)

    assert changes(0.1) < changes(0.6) < changes(0.95)


def test_every_signal_differs_without_colour() -> None:
    """Red-green colour blindness: the position (top, middle, bottom) and pattern must differ."""
    signatures = {}
    for signal in Signal:
        pattern = tuple(levels_at(signal, t / 20, 0.5)[:3] for t in range(80))
        signatures[pattern] = signal
    assert len(signatures) == len(Signal)


def test_active_low_inverts_the_pins() -> None:
    factory = MockFactory()
    lights = GpioLights(RED, AMBER, GREEN, active_high=False, pin_factory=factory)
    lights.set(Levels(green=True))
    assert [factory.pin(p).state for p in (RED, AMBER, GREEN)] == [True, True, False]
    lights.close()


def test_shown_history_and_close() -> None:
    recorder = RecordingLights()
    bay = BayLights("x", recorder, clock=lambda: 0.0)
    for signal in (Signal.READY, Signal.SCANNING, Signal.SCANNING, Signal.INCOMPLETE):
        bay.show(signal)
    assert bay.shown == ["ready", "scanning", "could_not_check"]
    bay.close()
    assert recorder.history[-1] == Levels()


def test_a_gpio_chip_that_does_not_exist_is_one_line() -> None:
    """lights.gpio_chip: lgpio on that chip; this VM has no GPIO chip at all."""
    if Path("/dev/gpiochip9").exists():
        pytest.skip("this machine has a /dev/gpiochip9")
    with pytest.raises(LightsUnavailable) as raised:
        gpio_pin_factory(9, "c03114")
    assert str(raised.value).startswith("/dev/gpiochip9: ") and "\n" not in str(raised.value)


def test_ready_with_a_filter_expiring_soon_adds_an_amber_flash() -> None:
    """Ready's green flash every 3 s, then an amber one 0.4 s later: still "plug a device in", and
    "call support, a filter expires soon"; no red, no sound."""
    times = [t / 100 for t in range(600)]
    expiring = [levels_at(Signal.READY_EXPIRING, t) for t in times]
    ready = [levels_at(Signal.READY, t) for t in times]
    assert [levels.green for levels in expiring] == [levels.green for levels in ready]
    amber = [t for t, levels in zip(times, expiring, strict=True) if levels.amber]
    assert all(0.39 < t % 3.0 < 0.5 for t in amber) and 18 <= len(amber) <= 22, amber
    assert {int(t // 3) for t in amber} == {0, 1}, "once in each 3 s"
    assert not any(levels.red or levels.buzzer for levels in expiring)
    assert not any(levels.green and levels.amber for levels in expiring), "one light at a time"


def test_the_expiring_signal_is_in_both_tables() -> None:
    import agent.lights.signals as signals

    row = "| ready, a filter expires soon | off | 0.1 s flash, 0.4 s after green's | 0.1 s flash every 3 s |"
    assert row in (signals.__doc__ or "")
    operations = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    assert row in operations.split("## What the lights say", 1)[1].split("\n## ", 1)[0]
