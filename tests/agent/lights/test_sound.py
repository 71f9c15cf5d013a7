"""Sound (issue 14, item 3): each verdict its own rhythm, the priority alarm repeating until it is
acknowledged (or 2 minutes), and the acknowledge button silencing it with the lights left as they
are. ``levels_at`` is a pure function of time: the patterns are read by stepping it; the button is
pressed through gpiozero's mock pins (``drive_low``)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.lights.bay import BayLights, GpioLights, LightsUnavailable, RecordingLights
from agent.lights.button import FakeButton, GpioButton
from agent.lights.signals import ALARM_SECONDS, SILENCEABLE, SOUNDS, Signal, levels_at

STEP = 0.01
RED, AMBER, GREEN, BUZZER, BUTTON = 17, 27, 22, 23, 24
VERDICTS = (Signal.PRIORITY_MATCH, Signal.MATCH, Signal.NO_MATCH, Signal.INCOMPLETE, Signal.FAULT)


def beeps(signal: Signal, until: float, start: float = 0.0) -> list[tuple[float, float]]:
    """(start, length) of every beep ``signal`` sounds from ``start`` to ``until`` s, read off
    ``levels_at`` in 10 ms steps."""
    found: list[tuple[float, float]] = []
    began: float | None = None
    steps = round((until - start) / STEP)
    for step in range(steps + 1):
        t = round(start + step * STEP, 6)
        on = levels_at(signal, t).buzzer and step < steps
        if on and began is None:
            began = t
        elif not on and began is not None:
            found.append((began, round(t - began, 2)))
            began = None
    return found


def rhythm(signal: Signal) -> tuple[tuple[float, float], ...]:
    """One cycle of ``signal``'s sound as (beep length, gap after it) pairs: what the ear tells apart."""
    sound = SOUNDS[signal]
    heard = beeps(signal, sound.period)
    gaps = [round(b[0] - (a[0] + a[1]), 2) for a, b in itertools.pairwise(heard)]
    gaps.append(round(sound.period - (heard[-1][0] + heard[-1][1]), 2) if sound.lasts > sound.period else 0.0)
    return tuple((length, gap) for (_, length), gap in zip(heard, gaps, strict=True))


def test_every_verdict_has_its_own_rhythm() -> None:
    rhythms = {signal: rhythm(signal) for signal in VERDICTS}
    assert len(set(rhythms.values())) == len(VERDICTS), rhythms
    # and whether it repeats: the alarm, a match and could-not-check do, no match and the fault do not
    repeats = {signal: len(beeps(signal, 20.0)) > len(rhythms[signal]) for signal in VERDICTS}
    assert repeats == {
        Signal.PRIORITY_MATCH: True,
        Signal.MATCH: True,
        Signal.NO_MATCH: False,
        Signal.INCOMPLETE: True,
        Signal.FAULT: False,
    }


def test_the_priority_alarm_repeats_for_two_minutes_then_stops() -> None:
    assert ALARM_SECONDS == 120.0
    heard = beeps(Signal.PRIORITY_MATCH, ALARM_SECONDS + 10)
    assert len(heard) == 4 * 80, "4 quick beeps every 1.5 s for 120 s"
    assert {length for _, length in heard} == {0.1}
    assert heard[-1][0] < ALARM_SECONDS <= heard[-1][0] + 1.5
    assert not any(levels_at(Signal.PRIORITY_MATCH, ALARM_SECONDS + t / 10).buzzer for t in range(600))
    assert all(levels_at(Signal.PRIORITY_MATCH, t / 10).red for t in range(2000)), "red stays"
    # the alarm from the first priority hit on, as the scan goes on
    assert beeps(Signal.SCANNING_PRIORITY, 3.0) == beeps(Signal.PRIORITY_MATCH, 3.0)


def test_priority_not_journaled_adds_the_fault_beep_to_the_alarm() -> None:
    cycle = beeps(Signal.PRIORITY_MATCH_UNRECORDED, 3.0)
    assert cycle == [(0.0, 0.1), (0.2, 0.1), (0.4, 0.1), (0.6, 0.1), (1.2, 1.0)]
    assert len(beeps(Signal.PRIORITY_MATCH_UNRECORDED, ALARM_SECONDS + 10)) == 5 * 40


def test_match_no_match_could_not_check_and_fault() -> None:
    assert beeps(Signal.MATCH, 6.0) == [(0.0, 0.4), (0.8, 0.4)]
    assert len(beeps(Signal.MATCH, 90.0)) == 2 * 10, "every 6 s for a minute"
    assert beeps(Signal.NO_MATCH, 30.0) == [(0.0, 0.1)], "one short beep as the green comes on"
    assert beeps(Signal.INCOMPLETE, 30.0) == [
        (0.0, 0.6),
        (0.8, 0.15),
        (3.0, 0.6),
        (3.8, 0.15),
        (6.0, 0.6),
        (6.8, 0.15),
    ]
    assert beeps(Signal.FAULT, 30.0) == [(0.0, 1.0)], "as before"


def test_the_patterns_are_a_pure_function_of_time() -> None:
    times = [t / 7 for t in range(1000)]
    for signal in Signal:
        first = [levels_at(signal, t, 0.5) for t in times]
        assert first == [levels_at(signal, t, 0.5) for t in reversed(times)][::-1]


def test_silencing_keeps_the_lights_and_stops_the_buzzer() -> None:
    recorder = RecordingLights()
    clock = [0.0]
    bay = BayLights("front", recorder, clock=lambda: clock[0])
    bay.show(Signal.PRIORITY_MATCH)
    bay.render(0.05)
    assert recorder.history[-1].buzzer and recorder.history[-1].red
    assert bay.silence(0.06) is Signal.PRIORITY_MATCH
    assert recorder.history[-1] == levels_at(Signal.PRIORITY_MATCH, 0.06)._replace(buzzer=False), "at once"
    for step in range(1, 3000):
        bay.render(step / 20)
    assert not any(levels.buzzer for levels in recorder.history[-1:]) and recorder.history[-1].red
    assert all(not levels.buzzer for levels in recorder.history[2:]) and all(
        lv.red for lv in recorder.history[1:]
    )
    assert bay.silence(1.0) is None, "already silenced: nothing more to journal"
    bay.show(Signal.NO_MATCH)  # the next device's result sounds again
    bay.render(clock[0] + 0.05)
    assert recorder.history[-1].buzzer and recorder.history[-1].green


def test_only_what_still_sounds_can_be_silenced() -> None:
    bay = BayLights("front", RecordingLights(), clock=lambda: 0.0)
    for signal in Signal:
        bay.show(signal)
        assert (bay.silence(0.5) is not None) == (signal in SILENCEABLE), signal
        bay.show(Signal.OFF)
    bay.show(Signal.PRIORITY_MATCH)
    assert bay.silence(ALARM_SECONDS + 0.01) is None, "over after 2 minutes: nothing to silence"
    assert bay.silence(ALARM_SECONDS - 0.01) is Signal.PRIORITY_MATCH


def test_an_alarm_acknowledged_during_the_scan_stays_silent_for_its_verdict_only() -> None:
    recorder = RecordingLights()
    clock = [0.0]
    bay = BayLights("front", recorder, clock=lambda: clock[0])
    bay.show(Signal.SCANNING_PRIORITY, 0.3)
    assert bay.silence(0.5) is Signal.SCANNING_PRIORITY
    clock[0] = 40.0
    bay.show(Signal.PRIORITY_MATCH)
    bay.render(40.05)
    assert bay.silenced and recorder.history[-1].red and not recorder.history[-1].buzzer
    bay.show(Signal.SCANNING_PRIORITY, 0.3)
    assert bay.silence(40.5) is Signal.SCANNING_PRIORITY
    bay.show(Signal.PRIORITY_MATCH_UNRECORDED)  # a fault on top: the officer must hear it
    bay.render(40.05)
    assert not bay.silenced and recorder.history[-1].buzzer


def test_the_button_through_gpiozero_mock_pins_silences_the_bay() -> None:
    factory = MockFactory()
    clock = [0.0]
    bay = BayLights(
        "front", GpioLights(RED, AMBER, GREEN, BUZZER, pin_factory=factory), clock=lambda: clock[0]
    )
    button = GpioButton(BUTTON, pin_factory=factory)
    silenced: list[Signal | None] = []
    button.watch(lambda: silenced.append(bay.silence()))
    bay.show(Signal.PRIORITY_MATCH)
    for _ in range(60):  # 3 s: two bursts
        clock[0] = round(clock[0] + 0.05, 6)
        bay.render()
    before = len(factory.pin(BUZZER).states)
    assert before > 8
    pin = factory.pin(BUTTON)
    assert pin.state, "pulled up: not pressed"
    pin.drive_low()  # pressed
    pin.drive_high()  # let go
    assert silenced == [Signal.PRIORITY_MATCH]
    for _ in range(200):
        clock[0] = round(clock[0] + 0.05, 6)
        bay.render()
    states = [bool(s.state) for s in factory.pin(BUZZER).states]
    assert not any(states[before:]) and not factory.pin(BUZZER).state, "silent from the press on"
    assert [bool(s.state) for s in factory.pin(RED).states] == [False, True], "red stayed on"
    pin.drive_low()
    pin.drive_high()
    assert silenced == [Signal.PRIORITY_MATCH, None], "a second press: nothing left to silence"
    button.close()
    bay.close()
    GpioButton(BUTTON, pin_factory=factory).close()  # the pin was let go


def test_a_button_pin_that_cannot_be_claimed_is_one_line() -> None:
    factory = MockFactory()
    lights = GpioLights(RED, AMBER, GREEN, pin_factory=factory)
    with pytest.raises(LightsUnavailable) as raised:
        GpioButton(RED, pin_factory=factory, role="bays[0].button")
    assert str(raised.value).startswith(f"GPIO {RED}: GPIO {RED} (bays[0].button): ")
    assert "\n" not in str(raised.value)
    lights.close()


def test_the_fake_button() -> None:
    button = FakeButton()
    button.press()  # nothing watches yet: nothing happens
    pressed: list[int] = []
    button.watch(lambda: pressed.append(1))
    button.press()
    button.close()
    button.press()
    assert pressed == [1]


def test_the_sounds_are_in_both_tables() -> None:
    import agent.lights.signals as signals

    operations = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    table = operations.split("## What the lights say", 1)[1].split("\n## ", 1)[0]
    for text in (
        "4 quick beeps (0.1 s) every 1.5 s",
        "1 short beep (0.1 s)",
        "long-short (0.6 s",
        "1 long beep (1 s)",
        "2 slow beeps",
    ):
        assert text in (signals.__doc__ or "") and text in table, text
    assert "acknowledge button" in table and "`lights.button`" in operations
