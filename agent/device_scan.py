"""One device from plug to verdict: mount every partition read-only, scan them all, clean up.

The verdict of a device joins the scan's with what could not be mounted: a device with an encrypted,
unreadable or unformatted part is ``incomplete`` unless something matched elsewhere on it, never
``no_match``. Used by ``fieldtriage scan --device/--image`` and by the daemon, the same path.

Example (root)::

    result = scan_device("/dev/sdb", Mounter(Path("/run/fieldtriage")), Scanner(filters))
    result.verdict, result.to_json()["partitions"]
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import MountedDevice, Mounter
from agent.scan.engine import Scanner
from agent.scan.events import ScanEvent
from agent.scan.names import shown
from agent.scan.report import ScanReport, Verdict
from filters.errors import FieldtriageError

EXIT_STATUS: dict[str, int] = {"no_match": 0, "priority_match": 1, "match": 1, "incomplete": 3}


@dataclass
class DeviceScanResult:
    """A device's verdict, its partitions and what became of each, and the scan report."""

    source: str
    verdict: Verdict
    identity: DeviceIdentity | None = None
    size: int = 0
    scheme: str = ""
    partitions: list[dict[str, Any]] = field(default_factory=list)
    storages: list[dict[str, Any]] = field(default_factory=list)  # a phone's (agent.phones)
    device_problems: list[str] = field(default_factory=list)
    cleanup_problems: list[str] = field(default_factory=list)
    report: ScanReport | None = None

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.verdict]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": shown(os.fsencode(self.source)),
            "verdict": self.verdict,
            "device": self.identity.describe() if self.identity else None,
            "size": self.size,
            "partition_table": self.scheme,
            "partitions": self.partitions,
            "storages": self.storages,
            "device_problems": self.device_problems,
            "cleanup_problems": self.cleanup_problems,
            "scan": self.report.to_json() if self.report else None,
        }


def device_verdict(report: ScanReport | None, device_complete: bool) -> Verdict:
    if report is not None and report.verdict in ("priority_match", "match"):
        return report.verdict
    if report is None or not device_complete:
        return "incomplete"
    return report.verdict


def relative_to(report: ScanReport, prefix: bytes) -> ScanReport:
    """The report with paths relative to the device's mount folder: ``p1/DCIM/IMG_0001.JPG``."""

    def strip(path: bytes) -> bytes:
        return path[len(prefix) :] if path.startswith(prefix) else path

    return dataclasses.replace(
        report,
        roots=tuple(strip(r) for r in report.roots),
        hits=[dataclasses.replace(h, path=strip(h.path)) for h in report.hits],
        errors=[dataclasses.replace(p, path=strip(p.path)) for p in report.errors],
        skipped=[dataclasses.replace(p, path=strip(p.path)) for p in report.skipped],
    )


def scan_device(
    source: str,
    mounter: Mounter,
    scanner: Scanner,
    *,
    identity: DeviceIdentity | None = None,
    on_event: Callable[[ScanEvent], None] | None = None,
) -> DeviceScanResult:
    """Mount, scan and unmount ``source``; never raises for what a device can do to us."""
    try:
        mounted = mounter.mount(source)
    except FieldtriageError as err:
        return DeviceScanResult(source, "incomplete", identity, device_problems=[str(err)])
    return scan_mounted(mounted, scanner, identity=identity, on_event=on_event)


def scan_mounted(
    mounted: MountedDevice,
    scanner: Scanner,
    *,
    identity: DeviceIdentity | None = None,
    on_event: Callable[[ScanEvent], None] | None = None,
) -> DeviceScanResult:
    """Scan every mounted partition of ``mounted``, then close it (unmount, detach)."""
    result = DeviceScanResult(mounted.source, "incomplete", identity)
    try:
        result.size = mounted.size
        result.scheme = mounted.table.scheme
        result.partitions = [p.describe() for p in mounted.partitions]
        result.device_problems = mounted.problems()
        roots = [os.fsencode(str(root)) for root in mounted.roots()]
        if roots and not scanner.cancel.is_set():
            report = scanner.scan(roots, on_event)
            result.report = relative_to(report, os.fsencode(str(mounted.folder)) + b"/")
    finally:
        mounted.close()
        result.cleanup_problems = list(mounted.cleanup_problems)
    result.verdict = device_verdict(result.report, mounted.complete)
    return result
