"""Plug and unplug events for selected disks, from udev (real) or from a test (fake).

``UdevDeviceSource`` listens on the udev netlink with a monitor filtered in the kernel to the block
subsystem and to USB devices (phones: ``agent.phones.detect``), and is itself a file descriptor to
poll: no thread. Any event on a disk or one of its partitions, or on a phone, (re)starts a short
settle timer for that device; when it runs out, its state is read afresh and compared with what
was last reported, which yields the events. A card reader's inserted
card and an attached loop device arrive as ``change`` events and are handled exactly like a plug; a
new DISKSEQ on a present disk (media swapped) is an unplug followed by a plug. At start, and after
any monitor error (netlink overflow: pyudev #194), the monitor is recreated and every disk is looked
at again, so hotplug never stops silently and devices plugged in before start are handled too.

Example::

    source = UdevDeviceSource(DeviceSelector.from_texts(["ID_BUS=usb"]))
    while True:
        select.select([source], [], [], source.timeout())
        for event in source.poll():
            print(event.kind, event.identity.label())
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyudev

from agent.devices.identity import DeviceIdentity
from agent.devices.selection import DeviceSelector
from agent.phones.detect import phone_identity, phone_kind, port_path, usb_properties

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.4
RECEIVE_BUFFER = 64 << 20
EventKind = Literal["plugged", "unplugged"]


@dataclass(frozen=True)
class DeviceEvent:
    """A change of a selected disk's state; ``identity`` is the new one, or the last one on unplug."""

    kind: EventKind
    identity: DeviceIdentity
    old_state: str
    new_state: str


class DeviceSource(Protocol):
    def fileno(self) -> int: ...

    def timeout(self) -> float | None: ...

    def poll(self) -> list[DeviceEvent]: ...

    def close(self) -> None: ...


class UdevDeviceSource:
    """Selected disks' plug/unplug events from the real udev."""

    def __init__(
        self,
        selector: DeviceSelector,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        ignore: Callable[[str], bool] = lambda sys_name: False,
        clock: Callable[[], float] = time.monotonic,
        phones: bool = True,
    ) -> None:
        self.selector = selector
        self.phones = phones
        self.settle_seconds = settle_seconds
        self.ignore = ignore
        self.clock = clock
        self.context = pyudev.Context()
        self.reported: dict[str, DeviceIdentity] = {}
        self.pending: dict[str, float] = {}
        self.monitor_restarts = 0
        self.monitor: Any = None
        self._start_monitor()

    def _start_monitor(self) -> None:
        self.monitor = None  # pyudev closes a monitor's socket when the object goes
        monitor = pyudev.Monitor.from_netlink(self.context)
        monitor.filter_by("block")
        if self.phones:
            monitor.filter_by("usb", "usb_device")  # phones (kernel filters are OR-ed)
        try:
            monitor.set_receive_buffer_size(RECEIVE_BUFFER)
        except Exception as err:  # pyudev raises its own error types here
            log.warning("could not enlarge the udev receive buffer: %s", err)
        monitor.start()
        self.monitor = monitor
        self._look_at_everything()

    def _look_at_everything(self) -> None:
        now = self.clock()
        for device in self.context.list_devices(subsystem="block", DEVTYPE="disk"):
            self.pending[device.device_path] = now
        if self.phones:
            for device in self.context.list_devices(subsystem="usb", DEVTYPE="usb_device"):
                self.pending[device.device_path] = now
        for devpath in self.reported:
            self.pending[devpath] = now

    def fileno(self) -> int:
        fd: int = self.monitor.fileno()
        return fd

    def timeout(self) -> float | None:
        """Seconds until a settling disk is due (None: nothing pending)."""
        if not self.pending:
            return None
        return max(0.0, min(self.pending.values()) - self.clock())

    def poll(self) -> list[DeviceEvent]:
        """Drain the monitor without blocking and return the events of disks that have settled."""
        try:
            while True:
                device = self.monitor.poll(timeout=0)
                if device is None:
                    break
                self._note(device)
        except (OSError, pyudev.DeviceNotFoundError) as err:
            log.warning("udev monitor failed (%s); restarting it and looking at every disk again", err)
            self.monitor_restarts += 1
            self._start_monitor()
        return self._settled_events()

    def _note(self, device: Any) -> None:
        if device.subsystem == "usb":  # a phone changes mode by re-enumerating: remove, then add
            due = self.clock() + (0.0 if device.action == "remove" else self.settle_seconds)
            self.pending[device.device_path] = due
            return
        disk = device if device.device_type == "disk" else device.find_parent("block", "disk")
        if disk is None:
            return
        due = self.clock() + (0.0 if device.action == "remove" and device is disk else self.settle_seconds)
        self.pending[disk.device_path] = due

    def _settled_events(self) -> list[DeviceEvent]:
        now = self.clock()
        events: list[DeviceEvent] = []
        for devpath in [d for d, due in self.pending.items() if due <= now]:
            del self.pending[devpath]
            events.extend(self._compare(devpath, self._current(devpath)))
        return events

    def _current(self, devpath: str) -> DeviceIdentity | None:
        try:
            device = pyudev.Devices.from_path(self.context, devpath)
        except (pyudev.DeviceNotFoundError, OSError):
            return None
        if not device.is_initialized or self.ignore(device.sys_name):
            return None
        if device.subsystem == "usb":
            return self._phone(device)
        identity = DeviceIdentity.from_udev(device)
        number = f"{identity.properties.get('MAJOR', '')}:{identity.properties.get('MINOR', '')}"
        if not identity.present or self.selector.refusal(device.properties, number):
            return None
        return identity

    def _phone(self, device: Any) -> DeviceIdentity | None:
        if device.device_type != "usb_device":
            return None
        properties = usb_properties(device)
        if phone_kind(properties) is None:
            return None
        return phone_identity(properties, port_path(device), device.device_path)

    def _compare(self, devpath: str, current: DeviceIdentity | None) -> list[DeviceEvent]:
        return compare_states(self.reported, devpath, current)

    def close(self) -> None:
        self.monitor = None

    def __enter__(self) -> UdevDeviceSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compare_states(
    reported: dict[str, DeviceIdentity], devpath: str, current: DeviceIdentity | None
) -> list[DeviceEvent]:
    """Events that take ``reported[devpath]`` to ``current``; updates ``reported``."""
    previous = reported.get(devpath)
    events: list[DeviceEvent] = []
    if previous is not None and (current is None or current.diskseq != previous.diskseq):
        events.append(DeviceEvent("unplugged", previous, "present", "absent"))
        del reported[devpath]
    if current is not None and devpath not in reported:
        events.append(DeviceEvent("plugged", current, "absent", "present"))
        reported[devpath] = current
    return events


class FakeDeviceSource:
    """A device source driven by a test: ``plug``/``unplug`` queue events; the fd is a pipe."""

    def __init__(self) -> None:

        self._read, self._write = os.pipe()
        self._queue: list[DeviceEvent] = []
        self.reported: dict[str, DeviceIdentity] = {}

    def plug(self, identity: DeviceIdentity) -> None:
        self._push(compare_states(self.reported, identity.devpath, identity))

    def unplug(self, devpath: str) -> None:
        self._push(compare_states(self.reported, devpath, None))

    def _push(self, events: Iterable[DeviceEvent]) -> None:

        self._queue.extend(events)
        os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def timeout(self) -> float | None:
        return None

    def poll(self) -> list[DeviceEvent]:

        os.set_blocking(self._read, False)
        try:
            os.read(self._read, 4096)
        except BlockingIOError:
            pass
        events, self._queue = self._queue, []
        return events

    def close(self) -> None:

        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
