"""One device from plug to verdict: mount every partition read-only, scan them all, clean up.

The verdict of a device joins the scan's with what could not be mounted: a device with an encrypted,
unreadable or unformatted part is ``incomplete`` unless something matched elsewhere on it, never
``no_match``. Used by ``fieldtriage scan --device/--image`` and by the daemon, the same path.

With ``blocks`` (``BlockSettings``), the file scan is followed by a block sample of the raw device
through the mounter's read-only descriptor (``agent/scan/blocks.py``): every partition, mounted or
not, and the space outside them. A block hit is a match (red when its set is priority); the sample
never makes a device green that its file scan did not: it can only find matches.

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
from agent.scan.blocks import (
    BlockHit,
    BlockSampleResult,
    BlockSettings,
    advise_normal,
    advise_random,
    fd_reader,
    regions_of,
    sample_device,
)
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
    device_notes: list[str] = field(default_factory=list)  # read soundly, worth a look (a backup GPT)
    cleanup_problems: list[str] = field(default_factory=list)
    report: ScanReport | None = None
    blocks: BlockSampleResult | None = None  # the block sample of the raw device (None: not asked)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.verdict]

    def statement(self) -> str:
        """The verdict in words with what backs it: ``no match: every file checked; blocks 99% for
        20 MiB``."""
        words = {"priority_match": "priority match", "match": "match", "no_match": "no match"}
        parts = []
        hits = len(self.report.hits) if self.report is not None else 0
        if self.verdict == "no_match":
            parts.append("every file checked")
        elif self.verdict == "incomplete":
            parts.append("not every file checked")
        elif hits:
            parts.append(f"{hits} file{'s' if hits != 1 else ''} matched")
        blocks = self.blocks
        if blocks is not None and blocks.hits:
            parts.append(f"{len(blocks.hits)} known block{'s' if len(blocks.hits) != 1 else ''} found")
        if blocks is not None and blocks.skipped != NO_BLOCK_SETS:
            parts.append(blocks.short())
        return f"{words.get(self.verdict, 'could not check')}: {'; '.join(parts)}"

    @property
    def empty(self) -> bool:
        """No match, and no regular file on the whole device: still "no match" (green), said as
        "empty (0 files)" in the status, the journal and the reports, for the analyst to see."""
        return self.verdict == "no_match" and self.report is not None and self.report.counts.files_seen == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": shown(os.fsencode(self.source)),
            "verdict": self.verdict,
            "empty": self.empty,
            "device": self.identity.describe() if self.identity else None,
            "size": self.size,
            "partition_table": self.scheme,
            "partitions": self.partitions,
            "storages": self.storages,
            "device_problems": self.device_problems,
            "device_notes": self.device_notes,
            "cleanup_problems": self.cleanup_problems,
            "scan": self.report.to_json() if self.report else None,
            "blocks": self.blocks.to_json() if self.blocks else None,
            "block_hits": self.blocks.hits_json() if self.blocks else [],
            "statement": self.statement(),
        }


def device_verdict(
    report: ScanReport | None, device_complete: bool, blocks: BlockSampleResult | None = None
) -> Verdict:
    """The file scan's verdict joined with what could not be mounted and with the block sample's
    hits: a block hit is a match; the sample never makes a device more than its files make it."""
    if (report is not None and report.verdict == "priority_match") or (
        blocks is not None and blocks.priority
    ):
        return "priority_match"
    if (report is not None and report.verdict == "match") or (blocks is not None and blocks.hits):
        return "match"
    if report is None or not device_complete:
        return "incomplete"
    return report.verdict


NO_BLOCK_SETS = "no filter has a block set"


def _files_state(mounted: bool, problem: str) -> str:
    """What the file scan did with a partition, for the block sample's regions."""
    if mounted:
        return f"checked, but {problem}" if problem else "checked"
    return f"not checked: {problem or 'not mounted'}"


def sample_blocks(
    mounted: MountedDevice,
    scanner: Scanner,
    settings: BlockSettings,
    report: ScanReport | None,
    on_hit: Callable[[BlockHit], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BlockSampleResult:
    """The block sample of ``mounted``'s raw device, read through its read-only descriptor, with
    the filters of ``scanner``; a sample that cannot run says why (never raises)."""
    skipped = None
    if scanner.cancel.is_set():
        skipped = "cancelled"
    elif report is not None and report.stopped_at_first_priority:
        skipped = "stopped at the first priority match"
    elif mounted.fd is None:
        skipped = "the device is not open"
    if skipped is not None:
        return BlockSampleResult(settings, skipped=skipped)
    fd = mounted.fd
    assert fd is not None
    parts = [
        (p.partition.number, p.partition.start, p.partition.size, _files_state(p.mounted, p.problem))
        for p in mounted.partitions
    ]
    read_at = fd_reader(fd)

    def quiet(offset: int, length: int) -> bytes:  # boot sectors: an unreadable one is no layout
        try:
            return read_at(offset, length)
        except OSError:
            return b""

    advise_random(fd)
    try:
        regions = regions_of(mounted.size, parts, quiet)
        filters = [p.contraband for p in scanner.plan.filters]
        return sample_device(read_at, regions, filters, settings, scanner.cancel, on_hit, on_progress)
    except Exception as err:  # a bug must not take the file scan's verdict with it
        return BlockSampleResult(settings, skipped=f"internal error: {type(err).__name__}: {err}")
    finally:
        advise_normal(fd)


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
    blocks: BlockSettings | None = None,
    on_block_hit: Callable[[BlockHit], None] | None = None,
    on_block_progress: Callable[[int, int], None] | None = None,
) -> DeviceScanResult:
    """Mount, scan and unmount ``source``; never raises for what a device can do to us."""
    try:
        mounted = mounter.mount(source)
    except FieldtriageError as err:
        return DeviceScanResult(source, "incomplete", identity, device_problems=[str(err)])
    return scan_mounted(
        mounted,
        scanner,
        identity=identity,
        on_event=on_event,
        blocks=blocks,
        on_block_hit=on_block_hit,
        on_block_progress=on_block_progress,
    )


def scan_mounted(
    mounted: MountedDevice,
    scanner: Scanner,
    *,
    identity: DeviceIdentity | None = None,
    on_event: Callable[[ScanEvent], None] | None = None,
    blocks: BlockSettings | None = None,
    on_block_hit: Callable[[BlockHit], None] | None = None,
    on_block_progress: Callable[[int, int], None] | None = None,
) -> DeviceScanResult:
    """Scan every mounted partition of ``mounted``, then (with ``blocks``) sample its raw device,
    then close it (unmount, detach)."""
    result = DeviceScanResult(mounted.source, "incomplete", identity)
    try:
        result.size = mounted.size
        result.scheme = mounted.table.scheme
        result.partitions = [p.describe() for p in mounted.partitions]
        result.device_problems = mounted.problems()
        result.device_notes = list(mounted.table.notes)
        roots = [os.fsencode(str(root)) for root in mounted.roots()]
        if roots and not scanner.cancel.is_set():
            report = scanner.scan(roots, on_event, estimate=mounted.estimate)
            result.report = relative_to(report, os.fsencode(str(mounted.folder)) + b"/")
        if blocks is not None:
            result.blocks = sample_blocks(
                mounted, scanner, blocks, result.report, on_block_hit, on_block_progress
            )
    finally:
        mounted.close()
        result.cleanup_problems = list(mounted.cleanup_problems)
    result.verdict = device_verdict(result.report, mounted.complete, result.blocks)
    return result
