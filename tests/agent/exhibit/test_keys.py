"""Key events of a barcode scanner (a USB HID keyboard) to labels: the US layout, Shift, Caps Lock,
the keypad, Enter; junk dropped with a log line; bounded; a pause abandons a partial label."""

from __future__ import annotations

import logging

import pytest

from agent.exhibit.keys import KEYS, MAX_LABEL, KeyDecoder

LSHIFT, RSHIFT, CAPS, ENTER, KP_ENTER, LCTRL, TAB, BACKSPACE, F1 = 42, 54, 58, 28, 96, 29, 15, 14, 59
# the plain and shifted character of every key, from the kernel's key names (python-evdev's table)
NAMES = {
    "1": ("1", "!"), "2": ("2", "@"), "3": ("3", "#"), "4": ("4", "$"), "5": ("5", "%"),
    "6": ("6", "^"), "7": ("7", "&"), "8": ("8", "*"), "9": ("9", "("), "0": ("0", ")"),
    "MINUS": ("-", "_"), "EQUAL": ("=", "+"), "LEFTBRACE": ("[", "{"), "RIGHTBRACE": ("]", "}"),
    "SEMICOLON": (";", ":"), "APOSTROPHE": ("'", '"'), "GRAVE": ("`", "~"), "BACKSLASH": ("\\", "|"),
    "COMMA": (",", "<"), "DOT": (".", ">"), "SLASH": ("/", "?"), "SPACE": (" ", " "),
    **{f"KP{d}": (str(d), str(d)) for d in range(10)}, "KPMINUS": ("-", "-"), "KPPLUS": ("+", "+"),
    "KPDOT": (".", "."), "KPASTERISK": ("*", "*"), "KPSLASH": ("/", "/"),
    **{ch.upper(): (ch, ch.upper()) for ch in "abcdefghijklmnopqrstuvwxyz"},
}  # fmt: skip
CODES = {ch: code for code, (plain, _) in KEYS.items() for ch in plain if code < 55 or code == 57}


def typed(decoder: KeyDecoder, text: str, at: float = 0.0, step: float = 0.002) -> list[str | None]:
    """Key events a scanner sends for ``text`` then Enter, one key every ``step`` seconds."""
    out: list[str | None] = []
    shifted = {s: code for code, (_, s) in KEYS.items() if code < 58}
    for ch in text:
        if ch in CODES:
            events = [(CODES[ch], 1), (CODES[ch], 0)]
        else:
            events = [(LSHIFT, 1), (shifted[ch], 1), (shifted[ch], 0), (LSHIFT, 0)]
        for code, value in events:
            out.append(decoder.feed(code, value, at))
            at += step
    out.append(decoder.feed(ENTER, 1, at))
    out.append(decoder.feed(ENTER, 0, at + step))
    return out


def labels(decoder: KeyDecoder, text: str, at: float = 0.0) -> list[str]:
    return [label for label in typed(decoder, text, at) if label is not None]


def test_the_table_is_the_kernels() -> None:
    ecodes = pytest.importorskip("evdev.ecodes")
    for name, characters in NAMES.items():
        assert KEYS[getattr(ecodes, f"KEY_{name}")] == characters, name
    assert (ecodes.KEY_ENTER, ecodes.KEY_KPENTER, ecodes.KEY_LEFTSHIFT, ecodes.KEY_CAPSLOCK) == (
        28,
        96,
        42,
        58,
    )
    assert len(KEYS) == len(NAMES)


def test_every_printable_character_of_a_us_keyboard_comes_through() -> None:
    text = "EXH-2024/000123.A " + "".join(s for _, s in KEYS.values()) + "".join(p for p, _ in KEYS.values())
    text = text[:MAX_LABEL].strip()
    assert labels(KeyDecoder("scanner"), text) == [text]


def test_one_label_per_enter_and_the_keypad_enter_too() -> None:
    decoder = KeyDecoder("scanner")
    assert labels(decoder, "EXH-1") == ["EXH-1"]
    assert labels(decoder, "exh-2", at=5.0) == ["exh-2"]
    for code in (CODES["4"], CODES["2"]):
        decoder.feed(code, 1, 10.0)
        decoder.feed(code, 0, 10.0)
    assert decoder.feed(KP_ENTER, 1, 10.0) == "42"


def test_right_shift_caps_lock_and_the_keypad() -> None:
    decoder = KeyDecoder("scanner")
    events = [(CAPS, 1), (CAPS, 0), (30, 1), (30, 0), (RSHIFT, 1), (30, 1), (30, 0), (2, 1),
              (2, 0), (RSHIFT, 0), (CAPS, 1), (CAPS, 0), (30, 1), (30, 0), (79, 1), (79, 0), (83, 1),
              (83, 0)]  # fmt: skip
    for code, value in events:
        assert decoder.feed(code, value, 0.0) is None
    assert decoder.feed(ENTER, 1, 0.0) == "Aa!a1."


def test_repeats_are_ignored_and_spaces_around_are_trimmed() -> None:
    decoder = KeyDecoder("scanner")
    for code, value in [(57, 1), (57, 0), (30, 1), (30, 2), (30, 2), (30, 0), (57, 1), (57, 0)]:
        decoder.feed(code, value, 0.0)
    assert decoder.feed(ENTER, 1, 0.0) == "a"


@pytest.mark.parametrize(
    "junk, reason",
    [
        ([(LCTRL, 1), (30, 1), (30, 0), (LCTRL, 0)], "Ctrl, Alt or Meta"),
        ([(TAB, 1), (TAB, 0)], "key code 15"),
        ([(BACKSPACE, 1), (BACKSPACE, 0)], "key code 14"),
        ([(F1, 1), (F1, 0)], "key code 59"),
    ],
)
def test_junk_in_a_label_drops_it_with_a_log_line(
    junk: list[tuple[int, int]], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    decoder = KeyDecoder("scanner")
    for code, value in [(30, 1), (30, 0), *junk, (31, 1), (31, 0)]:
        assert decoder.feed(code, value, 0.0) is None
    with caplog.at_level(logging.WARNING):
        assert decoder.feed(ENTER, 1, 0.0) is None
    assert reason in caplog.text and "label dropped" in caplog.text and decoder.dropped == 1
    assert labels(decoder, "next", at=0.1) == ["next"]  # the next label is whole again


def test_a_label_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    decoder = KeyDecoder("scanner")
    assert labels(decoder, "x" * MAX_LABEL) == ["x" * MAX_LABEL]
    with caplog.at_level(logging.WARNING):
        assert labels(decoder, "y" * (MAX_LABEL + 1), at=10.0) == []
    assert f"longer than {MAX_LABEL}" in caplog.text and len(decoder.typed) == 0
    decoder.feed(57, 1, 20.0)
    with caplog.at_level(logging.WARNING):
        assert decoder.feed(ENTER, 1, 20.0) is None  # spaces only
    assert "spaces only" in caplog.text
    assert decoder.feed(ENTER, 1, 20.0) is None  # Enter alone: nothing, no log line
    assert decoder.dropped == 2


def test_a_pause_abandons_a_partial_label(caplog: pytest.LogCaptureFixture) -> None:
    decoder = KeyDecoder("scanner")
    decoder.feed(30, 1, 0.0)
    decoder.feed(30, 0, 0.0)
    with caplog.at_level(logging.WARNING):
        assert labels(decoder, "EXH-9", at=1.5) == ["EXH-9"]
    assert "no key for 1.5 s" in caplog.text and decoder.dropped == 1


def test_a_scanner_that_goes_away_mid_label_leaves_nothing_behind(caplog: pytest.LogCaptureFixture) -> None:
    decoder = KeyDecoder("scanner")
    decoder.feed(LSHIFT, 1, 0.0)
    decoder.feed(30, 1, 0.0)
    with caplog.at_level(logging.WARNING):
        decoder.reset()
    assert "went away" in caplog.text
    assert labels(decoder, "b", at=0.1) == ["b"]  # Shift released with it
