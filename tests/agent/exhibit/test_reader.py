"""The evdev label source with the keyboards replaced by fakes (this VM has no input devices and
no uinput): which keyboards are scanners, the exclusive grab, labels from key events through the
one descriptor the daemon polls, a scanner unplugged, refused when it cannot be grabbed. The real
device, grab and console are the system test's (tests/system/test_exhibit.py)."""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.exhibit.reader import EvdevLabelSource, FakeLabelSource, ScannerRules, label_source

SCANNER = {"DEVNAME": "/dev/input/event7", "ID_INPUT_KEYBOARD": "1", "ID_INPUT_KEY": "1", "ID_BUS": "usb",
           "ID_VENDOR": "Zebra", "ID_MODEL": "Symbol_Bar_Code_Scanner", "ID_VENDOR_ID": "05e0",
           "ID_PATH": "platform-xhci-hcd.0-usb-0:3:1.0"}  # fmt: skip
RULES = ScannerRules.from_texts(["ID_VENDOR_ID=05e0"])


@dataclass
class Event:
    type: int
    code: int
    value: int
    sec: int = 1000
    usec: int = 0


class FakeKeyboard:
    """An input device: a pipe for its descriptor, events queued by ``keys``."""

    def __init__(self, grab_error: int = 0) -> None:
        self.fd, self._write = os.pipe2(os.O_NONBLOCK)
        self.name = "fake keyboard"
        self.events: list[Event] = []
        self.grab_error = grab_error
        self.grabbed = False
        self.closed = False
        self.gone = False

    def grab(self) -> None:
        if self.grab_error:
            raise OSError(self.grab_error, os.strerror(self.grab_error))
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def keys(self, *codes: int) -> None:
        for code in codes:
            self.events += [Event(4, 4, code), Event(1, code, 1), Event(1, code, 0), Event(0, 0, 0)]
        os.write(self._write, b"x")

    def unplug(self) -> None:
        self.gone = True
        os.write(self._write, b"x")

    def read(self) -> Iterator[Event]:
        if self.gone:
            raise OSError(errno.ENODEV, "No such device")
        if not self.events:
            try:
                os.read(self.fd, 64)
            except BlockingIOError:
                pass
            raise BlockingIOError(errno.EAGAIN, "again")
        events, self.events = self.events, []
        yield from events

    def close(self) -> None:
        self.closed = True
        os.close(self.fd)
        os.close(self._write)


@pytest.fixture
def keyboards() -> dict[str, FakeKeyboard]:
    return {}


@pytest.fixture
def source(keyboards: dict[str, FakeKeyboard]) -> Iterator[EvdevLabelSource]:
    def opener(node: str) -> FakeKeyboard:
        if node not in keyboards:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return keyboards[node]

    made = EvdevLabelSource(RULES, opener=opener)  # type: ignore[arg-type]
    yield made
    made.close()


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 1.0)[0])


def test_which_keyboards_are_scanners() -> None:
    assert RULES.refusal(SCANNER) == ""
    assert RULES.refusal(SCANNER | {"ID_VENDOR_ID": "046d"}) == "does not match ID_VENDOR_ID=05e0"
    # never a mouse, a joystick or the input device's parent (no event node)
    assert RULES.refusal({k: v for k, v in SCANNER.items() if k != "ID_INPUT_KEYBOARD"})
    assert RULES.refusal(SCANNER | {"DEVNAME": "/dev/input/mouse0"})
    by_port = ScannerRules.from_texts(["ID_PATH=*-usb-0:3:*", "ID_BUS=usb"])
    assert by_port.refusal(SCANNER) == "" and by_port.refusal(SCANNER | {"ID_PATH": "pci-usb-0:1:1.0"})


def test_a_scanner_is_grabbed_and_its_labels_come_through_the_one_descriptor(
    source: EvdevLabelSource, keyboards: dict[str, FakeKeyboard]
) -> None:
    keyboard = keyboards["/dev/input/event7"] = FakeKeyboard()
    assert source.attach("/dev/input/event7", SCANNER)
    assert keyboard.grabbed and source.attached() == ["Zebra Symbol Bar Code Scanner (/dev/input/event7)"]
    assert source.poll() == []
    keyboard.keys(18, 45, 35, 12, 2, 28)  # e x h - 1 Enter
    assert readable(source.fileno())
    assert source.poll() == ["exh-1"]
    assert not select.select([source.fileno()], [], [], 0)[0]  # drained: the daemon's loop sleeps


def test_an_unplugged_scanner_is_let_go_and_its_partial_label_dropped(
    source: EvdevLabelSource, keyboards: dict[str, FakeKeyboard]
) -> None:
    keyboard = keyboards["/dev/input/event7"] = FakeKeyboard()
    source.attach("/dev/input/event7", SCANNER)
    keyboard.keys(30, 31)
    assert source.poll() == []
    keyboard.unplug()
    assert readable(source.fileno())
    assert source.poll() == [] and source.attached() == [] and keyboard.closed
    assert source.scanners == {}


def test_a_keyboard_that_cannot_be_grabbed_is_not_used(
    source: EvdevLabelSource, keyboards: dict[str, FakeKeyboard], caplog: pytest.LogCaptureFixture
) -> None:
    keyboards["/dev/input/event7"] = busy = FakeKeyboard(grab_error=errno.EBUSY)
    assert not source.attach("/dev/input/event7", SCANNER)
    assert busy.closed and source.attached() == []
    assert "EBUSY" in caplog.text and "not used" in caplog.text
    assert not source.attach("/dev/input/event9", SCANNER)  # gone before it was opened


def test_close_lets_every_scanner_go(keyboards: dict[str, FakeKeyboard]) -> None:
    keyboard = keyboards["/dev/input/event7"] = FakeKeyboard()
    made = EvdevLabelSource(RULES, opener=lambda node: keyboards[node])  # type: ignore[arg-type,return-value]
    made.attach("/dev/input/event7", SCANNER)
    made.close()
    assert not keyboard.grabbed and keyboard.closed


def test_no_rules_no_scanner() -> None:
    assert label_source(()) is None


def test_the_fake() -> None:
    fake = FakeLabelSource()
    fake.scan("EXH-1")
    fake.scan("EXH-2")
    assert readable(fake.fileno()) and fake.poll() == ["EXH-1", "EXH-2"] and fake.poll() == []
    fake.close()
