"""Where exhibit labels come from: a USB barcode scanner (a HID keyboard) read through evdev, or a
fake for tests, behind one small interface, ``LabelSource``: a file descriptor to poll, ``poll()``
for the complete labels read since, ``close()``.

``EvdevLabelSource`` listens on the udev netlink with a monitor filtered in the kernel to the
``input`` subsystem, and takes every keyboard event node (``/dev/input/eventN`` with
``ID_INPUT_KEYBOARD=1``) whose udev properties match the configured rules (``exhibit.scanner``,
the rule syntax of ``devices.match``: ``KEY=GLOB``, ``KEY!=GLOB``, all must hold). Each one is
opened with python-evdev and grabbed (EVIOCGRAB, exclusive): from then on its keys reach only the
kiosk, never a console or a login prompt. A keyboard that cannot be grabbed (another program holds
it) is not used. Scanners come and go with hotplug; at start, and after a monitor error, every input
device is looked at again. The monitor and the scanners' descriptors sit in one epoll set, whose
descriptor is the one the daemon polls: no thread.

Example::

    source = EvdevLabelSource(ScannerRules.from_texts(["ID_VENDOR_ID=05e0"]))
    while True:
        select.select([source], [], [])
        for label in source.poll():
            print("exhibit", label)
"""

from __future__ import annotations

import errno
import logging
import os
import select
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.devices.selection import MatchRule, parse_rule
from agent.exhibit.keys import KeyDecoder
from filters.errors import printable

log = logging.getLogger(__name__)

EV_KEY = 1
READS_PER_POLL = 64  # reads of one scanner per poll (each up to 64 events); epoll says when there are more
# what every scanner is, whatever the rules say: a keyboard's event node
KEYBOARD = (parse_rule("ID_INPUT_KEYBOARD=1"), parse_rule("DEVNAME=/dev/input/event*"))


class LabelSource(Protocol):
    """Complete labels (exhibit references) from a scanner; ``fileno()`` is readable when there
    may be some."""

    def fileno(self) -> int: ...

    def poll(self) -> list[str]: ...

    def attached(self) -> list[str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ScannerRules:
    """Which keyboards are barcode scanners: the configured rules, on top of ``KEYBOARD``."""

    rules: tuple[MatchRule, ...]

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> ScannerRules:
        return cls(tuple(parse_rule(text) for text in texts))

    def refusal(self, properties: Mapping[str, str]) -> str:
        """Why the input device is not a scanner ('' when it is)."""
        for rule in (*KEYBOARD, *self.rules):
            if not rule.holds(properties):
                return f"does not match {rule}"
        return ""


class InputEvent(Protocol):
    type: int
    code: int
    value: int
    sec: int
    usec: int


class InputHandle(Protocol):
    """What is used of ``evdev.InputDevice``."""

    fd: int
    name: str

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def read(self) -> Iterator[InputEvent]: ...

    def close(self) -> None: ...


def open_evdev(node: str) -> InputHandle:
    import evdev

    handle: InputHandle = evdev.InputDevice(node)
    return handle


@dataclass
class Attached:
    node: str
    name: str
    handle: InputHandle
    decoder: KeyDecoder = field(repr=False)

    def describe(self) -> str:
        return printable(f"{self.name} ({self.node})")


class EvdevLabelSource:
    """Labels from the barcode scanners udev shows, each grabbed for the kiosk alone."""

    def __init__(
        self,
        rules: ScannerRules,
        *,
        opener: Callable[[str], InputHandle] = open_evdev,
        context: Any = None,
    ) -> None:
        import pyudev

        self.rules = rules
        self.opener = opener
        self.context = context if context is not None else pyudev.Context()
        self.scanners: dict[int, Attached] = {}  # by file descriptor
        self.monitor: Any = None
        self.monitor_restarts = 0
        self._epoll = select.epoll()
        self._monitor_fd = -1
        self._start_monitor()

    # -- udev ---------------------------------------------------------------------------------
    def _start_monitor(self) -> None:
        import pyudev

        if self.monitor is not None:
            self._forget_fd(self._monitor_fd)
            self.monitor = None  # pyudev closes the socket when the object goes
        monitor = pyudev.Monitor.from_netlink(self.context)
        monitor.filter_by("input")
        monitor.start()
        self.monitor = monitor
        self._monitor_fd = monitor.fileno()
        self._epoll.register(self._monitor_fd, select.EPOLLIN)
        for device in self.context.list_devices(subsystem="input"):
            self._consider("add", _properties(device))

    def _drain_monitor(self) -> None:
        try:
            while True:
                device = self.monitor.poll(timeout=0)
                if device is None:
                    return
                self._consider(str(device.action or "add"), _properties(device))
        except OSError as err:  # netlink overflow (pyudev #194): start again, look at everything
            log.warning("udev input monitor failed (%s); restarting it", err)
            self.monitor_restarts += 1
            self._start_monitor()

    def _consider(self, action: str, properties: Mapping[str, str]) -> None:
        node = properties.get("DEVNAME", "")
        known = next((fd for fd, a in self.scanners.items() if a.node == node), None)
        if action == "remove":
            if known is not None:
                self._detach(known, "unplugged")
            return
        if known is not None or self.rules.refusal(properties):
            return
        self.attach(node, properties)

    # -- scanners -----------------------------------------------------------------------------
    def attach(self, node: str, properties: Mapping[str, str]) -> bool:
        """Open and grab the keyboard at ``node``; False (logged) when it cannot be used."""
        name = _name(properties)
        try:
            handle = self.opener(node)
        except OSError as err:
            log.error("barcode scanner %s (%s) cannot be opened: %s", name, node, err.strerror or err)
            return False
        try:
            handle.grab()
        except OSError as err:
            log.error(
                "barcode scanner %s (%s) cannot be taken for the kiosk alone (%s): not used, its keys "
                "go where a keyboard's go",
                name,
                node,
                errno.errorcode.get(err.errno or 0, err),
            )
            handle.close()
            return False
        fd = handle.fd
        self._epoll.register(fd, select.EPOLLIN)
        self.scanners[fd] = Attached(node, name, handle, KeyDecoder(name))
        log.info("barcode scanner %s (%s) attached and grabbed", printable(name), node)
        return True

    def _detach(self, fd: int, why: str) -> None:
        attached = self.scanners.pop(fd)
        attached.decoder.reset()
        self._forget_fd(fd)
        try:
            attached.handle.ungrab()
        except OSError:
            pass  # gone with the device
        try:
            attached.handle.close()
        except OSError:
            pass
        log.info("barcode scanner %s detached (%s)", attached.describe(), why)

    def _forget_fd(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _read(self, fd: int, mask: int) -> list[str]:
        attached = self.scanners[fd]
        labels: list[str] = []
        try:
            for _ in range(READS_PER_POLL):
                for event in attached.handle.read():
                    if event.type != EV_KEY:
                        continue
                    label = attached.decoder.feed(event.code, event.value, event.sec + event.usec / 1e6)
                    if label is not None:
                        labels.append(label)
        except BlockingIOError:
            pass
        except OSError as err:  # ENODEV once it is unplugged
            self._detach(fd, err.strerror or str(err))
            return labels
        if mask & (select.EPOLLHUP | select.EPOLLERR):
            self._detach(fd, "hung up")
        return labels

    # -- LabelSource ----------------------------------------------------------------------------
    def fileno(self) -> int:
        return self._epoll.fileno()

    def poll(self) -> list[str]:
        labels: list[str] = []
        for fd, mask in self._epoll.poll(0):
            if fd == self._monitor_fd:
                self._drain_monitor()
            elif fd in self.scanners:
                labels.extend(self._read(fd, mask))
            else:
                self._forget_fd(fd)
        return labels

    def attached(self) -> list[str]:
        return [a.describe() for a in self.scanners.values()]

    def close(self) -> None:
        for fd in list(self.scanners):
            self._detach(fd, "the kiosk stopped")
        self.monitor = None
        self._epoll.close()


def _properties(device: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in device.properties.items()}


def _name(properties: Mapping[str, str]) -> str:
    parts = (properties.get("ID_VENDOR", ""), properties.get("ID_MODEL", ""))
    name = " ".join(p.replace("_", " ").strip() for p in parts if p) or properties.get("NAME", "").strip('"')
    return printable(name or "keyboard")


class FakeLabelSource:
    """Labels a test scans: ``scan(label)`` queues it; the descriptor is a pipe."""

    def __init__(self, attached: Sequence[str] = ("fake scanner",)) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._queue: list[str] = []
        self._attached = list(attached)
        self.closed = False

    def scan(self, label: str) -> None:
        self._queue.append(label)
        os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def poll(self) -> list[str]:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        labels, self._queue = self._queue, []
        return labels

    def attached(self) -> list[str]:
        return list(self._attached)

    def close(self) -> None:
        self.closed = True
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def label_source(rules: Sequence[str]) -> LabelSource | None:
    """The barcode scanners ``exhibit.scanner`` names, or None (logged): no rules (no scanner is
    read, no keyboard taken from the console), python-evdev missing, or no udev monitor."""
    if not rules:
        log.info("no barcode scanner configured (exhibit.scanner): exhibit references are not read")
        return None
    try:
        import evdev  # noqa: F401  (the kiosk image has Debian's python3-evdev: image-build/build.py)
    except ImportError as err:
        log.error("exhibit labels cannot be read: %s", err)
        return None
    try:
        return EvdevLabelSource(ScannerRules.from_texts(rules))
    except Exception as err:  # pyudev's errors, OSError: the kiosk runs on without its scanner
        log.error("exhibit labels cannot be read: the udev input monitor failed: %s", err)
        return None
