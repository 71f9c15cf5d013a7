"""``fieldtriage scan --phone [PORT]``: a phone read over MTP/PTP, as the kiosk reads it.

Without PORT the one phone connected is taken (several: they are listed and one must be named).
A phone that shows no storage is reported in the state the officer can act on ("unlock the phone
and choose File transfer", "unlock the iPhone and tap Trust"), exit 3; nothing is written to it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

import pyudev

from agent.device_scan import DeviceScanResult
from agent.devices.identity import DeviceIdentity
from agent.phones.camera import PhoneBackend, PhoneError
from agent.phones.detect import STATE_MESSAGES, phone_identity, phone_state, port_path, usb_properties
from agent.phones.scan import scan_phone
from agent.scan.engine import Scanner
from agent.scan.progress import ProgressBar
from agent.scan.summary import print_device_summary
from filters.errors import UsageError, printable


def scan_phone_command(
    args: argparse.Namespace, make_scanner: Callable[[], Scanner], backend: PhoneBackend | None = None
) -> int:
    if backend is None:
        from agent.phones.gphoto import GphotoBackend

        backend = GphotoBackend()
    port = choose_port(backend, args.phone)
    identity = usb_identity(port)
    scanner = make_scanner()
    try:
        session = backend.open(port)
        storages = session.storages()
    except PhoneError as err:
        session, storages = None, None
        reason = err.reason
    else:
        reason = ""
    state = phone_state(identity, storages)
    result = DeviceScanResult(port, "incomplete", identity, scheme=identity.phone_kind or "mtp/ptp")
    if session is None or storages is None or state != "ready":
        if session is not None:
            session.close()
        result.device_problems.append(STATE_MESSAGES[state] + (f" ({reason})" if reason else ""))
    else:
        result.storages = [s.describe() for s in storages]
        stops = (signal.SIGINT, signal.SIGTERM)
        previous = {stop: signal.signal(stop, lambda *_: scanner.cancel.set()) for stop in stops}
        try:
            bar = ProgressBar(sys.stderr) if ProgressBar.wanted(sys.stderr) else None
            with session:
                result.report = scan_phone(session, storages, scanner, bar)
        finally:
            for stop, handler in previous.items():
                signal.signal(stop, handler)
        result.verdict = result.report.verdict
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_device_summary(result, sys.stdout)
    return result.exit_status


def choose_port(backend: PhoneBackend, wanted: str) -> str:
    if wanted:
        return wanted
    found = backend.detect()
    if not found:
        raise UsageError(
            "--phone", "no phone found: connect it, unlock it and choose File transfer (an iPhone: tap Trust)"
        )
    if len(found) > 1:
        listed = ", ".join(f"{p.port} ({printable(p.model)})" for p in found)
        raise UsageError("--phone", f"several phones connected, name one: {listed}")
    return found[0].port


def usb_identity(port: str) -> DeviceIdentity:
    """The phone's identity from udev (its USB descriptors) for a ``usb:BBB,DDD`` port."""
    if port.startswith("usb:") and "," in port:
        bus, _, number = port[4:].partition(",")
        try:
            context = pyudev.Context()
            for device in context.list_devices(subsystem="usb", DEVTYPE="usb_device"):
                properties = usb_properties(device)
                if properties.get("BUSNUM", "").lstrip("0") == bus.lstrip("0") and properties.get(
                    "DEVNUM", ""
                ).lstrip("0") == number.lstrip("0"):
                    return phone_identity(properties, port_path(device), device.device_path)
        except (OSError, pyudev.DeviceNotFoundError):
            pass
    return DeviceIdentity(port, "", port, 0, kind="phone", phone_kind="")
