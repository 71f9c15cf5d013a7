"""A bay: one USB port with its lights; a worker thread takes one device from plug to verdict.

The worker mounts read-only, scans, lights red at the first priority hit while the scan goes on,
journals the whole scan and only then lights the verdict: a verdict is shown only once its record is
on disk. When the record cannot be written, a priority match stays red with the fault beside it
(``PRIORITY_MATCH_UNRECORDED``: the officer must act on it) and any other verdict shows the fault
signal, never green; the bay's ``problem`` (in the status file) says why. The same holds for a sync
("sync done" only once its record is on disk). A failure in one bay's worker never reaches another
bay: everything it does is caught and turned into "could not check".

Example::

    bay = Bay(BayConfig("front", red=17, amber=27, green=22), BayLights("front", RecordingLights()))
    worker = BayWorker(bay, identity, mounter, filters, ScanConfig(), journal)
    worker.start()
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.config import BayConfig, BlocksConfig, ScanConfig
from agent.daemon.sync import SyncSetup, find_sync_partition, run_sync, step_clock
from agent.device_scan import DeviceScanResult, scan_mounted
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import MountedDevice, Mounter
from agent.journal.records import fitted_scan_record
from agent.lights.bay import BayLights
from agent.lights.signals import Signal
from agent.scan.blocks import BlockHit
from agent.scan.engine import Scanner
from agent.scan.events import ScanEvent, ScanHit, ScanProgress, fraction_done
from agent.scan.exclusions import ExclusionList
from agent.scan.names import shown
from filters.errors import FieldtriageError, printable
from filters.model import ContrabandFilter, iso_time

log = logging.getLogger(__name__)

VERDICT_SIGNALS = {
    "priority_match": Signal.PRIORITY_MATCH,
    "match": Signal.MATCH,
    "no_match": Signal.NO_MATCH,
    "incomplete": Signal.INCOMPLETE,
}
# what a bay shows when the verdict's record cannot be journaled: never the verdict itself
UNRECORDED_SIGNALS = {"priority_match": Signal.PRIORITY_MATCH_UNRECORDED}


class JournalSink(Protocol):
    def append(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class Bay:
    """A port, its lights, and what it is doing now (read by the status file)."""

    config: BayConfig
    lights: BayLights
    phase: str = "ready"
    device: DeviceIdentity | None = None
    progress: float | None = None
    verdict: str | None = None
    empty: bool = False  # "no match", and the device held no regular file at all: "empty (0 files)"
    hits: int = 0
    priority_hits: int = 0
    started: str | None = None
    finished: str | None = None
    problem: str | None = None  # why the bay shows a fault (a refusal, a journal that failed)
    exhibit: str | None = None  # the exhibit reference its device took (a scanned label)
    worker: BayWorker | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.config.port,
            "phase": self.phase,
            "signal": self.lights.signal.value,
            "silenced": self.lights.silenced,  # its alarm silenced by an acknowledge button
            "device": self.device.describe() if self.device else None,
            "progress": self.progress,
            "verdict": self.verdict,
            "empty": self.empty,  # with verdict no_match: the device held no file ("empty (0 files)")
            "hits": self.hits,
            "priority_hits": self.priority_hits,
            "started": self.started,
            "finished": self.finished,
            "problem": self.problem,
            "exhibit": self.exhibit if self.phase != "ready" else None,  # none once the bay is free
        }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BayWorker(threading.Thread):
    def __init__(
        self,
        bay: Bay,
        identity: DeviceIdentity,
        mounter: Mounter | None,
        filters: Sequence[ContrabandFilter],
        scan_config: ScanConfig,
        journal: JournalSink,
        on_change: Callable[[], None] = lambda: None,
        sync: SyncSetup | None = None,
        refusal: str | None = None,
        exclusions: ExclusionList | None = None,
        exhibit: str | None = None,
        blocks: BlocksConfig | None = None,
    ) -> None:
        super().__init__(name=f"bay-{bay.name}", daemon=True)
        self.bay = bay
        self.identity = identity
        self.mounter = mounter
        self.filters = list(filters)
        self.exclusions = exclusions  # the station's reviewed false positives (agent/scan/exclusions.py)
        self.scan_config = scan_config
        self.journal = journal
        self.on_change = on_change
        self.sync = sync
        self.refusal = refusal  # set: the kiosk cannot scan (no valid filter...), it can only sync
        self.blocks = blocks.settings() if blocks is not None else None  # the block sample, or none
        self.exhibit = exhibit  # the scanned exhibit reference this device took: in every record
        self.ended: float | None = None  # monotonic, once run() is over
        self.notes: list[str] = []
        self.cancel = threading.Event()
        self.unplugged = False
        self.result: DeviceScanResult | None = None
        self.journal_error: str | None = None
        self._shown_from = len(bay.lights.shown)
        self._files_fraction: float | None = None  # of the file scan alone
        self._sampling = False  # the block sample follows the files: each is half of the bay's progress

    def run(self) -> None:
        bay = self.bay
        bay.phase, bay.device, bay.verdict, bay.progress = "mounting", self.identity, None, None
        bay.hits = bay.priority_hits = 0
        bay.empty = False
        bay.problem = None
        bay.exhibit = self.exhibit
        bay.started, bay.finished = now_iso(), None
        if self.refusal is None:
            bay.lights.show(Signal.SCANNING, 0.0)
        self.on_change()
        started = time.monotonic()
        try:
            verdict = self._mount_and_scan()
        except Exception:  # a bug must never turn into a green light or a dead kiosk
            log.error("bay %s: scan failed:\n%s", bay.name, traceback.format_exc())
            verdict = "incomplete"
        if verdict is None:
            self.ended = time.monotonic()
            self.on_change()  # the daemon reaps the bay at once (a phone may be re-enumerating)
            return  # synced, not scanned, or a phone gone before it could be read: shown and journaled
        if self.unplugged and verdict not in ("priority_match", "match"):
            verdict = "incomplete"
        bay.finished = now_iso()
        bay.progress = 1.0 if verdict != "incomplete" else bay.progress
        self._log_outcome(verdict)
        signal = VERDICT_SIGNALS[verdict]
        if self._journal(verdict, signal, time.monotonic() - started):
            bay.phase = "done" if not self.unplugged else "removed early"
            bay.lights.show(signal)
        else:
            bay.phase = "not journaled"
            bay.problem = f"journal: {self.journal_error}"
            bay.lights.show(UNRECORDED_SIGNALS.get(verdict, Signal.FAULT))
        bay.empty = self._empty(verdict)
        bay.verdict = verdict
        self.ended = time.monotonic()
        self.on_change()

    def _log_outcome(self, verdict: str) -> None:
        """One line per scan for the engineer (journalctl -u fieldtriage-agent), and why a device
        could not be checked completely."""
        result = self.result
        report = result.report if result is not None else None
        counts = f", {report.counts.files_read} files read" if report is not None else ", nothing scanned"
        counts += ", empty (0 files)" if self._empty(verdict) else ""
        early = ", removed early" if self.unplugged else ", cancelled" if self.cancel.is_set() else ""
        early += f", exhibit {self.exhibit}" if self.exhibit else ""
        log.info("bay %s: %s: %s%s%s", self.bay.name, self.identity.label(), verdict, counts, early)
        problems = [*result.device_problems, *result.cleanup_problems] if result is not None else []
        errors = report.errors[:5] if report is not None else []
        for problem in problems:
            log.warning("bay %s: not checked: %s", self.bay.name, printable(problem))
        for error in errors:
            log.warning("bay %s: could not read %s: %s", self.bay.name, shown(error.path), error.reason)
        for part in result.partitions if result is not None else []:
            log.debug("bay %s: partition %s", self.bay.name, part)

    def _mount_and_scan(self) -> str | None:
        scanner = None
        if self.refusal is None:
            scanner = Scanner(
                self.filters,
                mode=self.scan_config.mode,  # type: ignore[arg-type]
                workers=self.scan_config.workers or (1 if self.identity.rotational else None),
                stop_at_first_priority=self.scan_config.stop_at_first_priority,
                cancel=self.cancel,
                reader_processes=bool(self.scan_config.workers),
                exclusions=self.exclusions,
            )
        assert self.mounter is not None  # a disk's worker (phones: agent.daemon.phone)
        try:
            mounted = self.mounter.mount(self.identity.devnode)
        except FieldtriageError as err:
            self.result = DeviceScanResult(
                self.identity.devnode, "incomplete", self.identity, device_problems=[str(err)]
            )
            return self.result.verdict
        if self.sync is not None and self._synced(mounted, self.sync):
            return None
        if scanner is None:
            mounted.close()
            self._not_scanned(self.refusal or "cannot scan")
            return None
        self.bay.phase = "scanning"
        self.on_change()
        if self.blocks is not None and any(f.block_sets for f in self.filters):
            self._sampling = True
            self.result = scan_mounted(
                mounted,
                scanner,
                identity=self.identity,
                on_event=self._on_event,
                blocks=self.blocks,
                on_block_hit=self._on_block_hit,
                on_block_progress=self._on_block_progress,
            )
            return self.result.verdict
        self.result = scan_mounted(mounted, scanner, identity=self.identity, on_event=self._on_event)
        return self.result.verdict

    def _not_scanned(self, reason: str) -> None:
        bay = self.bay
        log.error("bay %s: not scanning %s: %s", bay.name, self.identity.label(), reason)
        bay.phase, bay.verdict, bay.finished, bay.problem = "not scanned", None, now_iso(), reason
        bay.lights.show(Signal.FAULT)  # shown whether or not the record can be written
        record = {"type": "not_scanned", "bay": bay.name, "device": self.identity.describe()}
        if not self._append(record | {"reason": reason} | self.exhibit_field()):
            bay.problem = f"{reason}; journal: {self.journal_error}"
        self.on_change()

    def _synced(self, mounted: MountedDevice, setup: SyncSetup) -> bool:
        """True when the device was a sync stick and has been dealt with as one."""
        try:
            found, self.notes = find_sync_partition(mounted, setup.station_key)
        except Exception:
            log.error("bay %s: sync token check failed:\n%s", self.bay.name, traceback.format_exc())
            found = None
        if found is None:
            return False
        part, token = found
        mounted.close()
        bay = self.bay
        bay.phase = "syncing"
        bay.lights.show(Signal.SYNC)
        self.on_change()
        step, clock = step_clock(setup, token)  # forward to the station's signed time when behind
        if step is not None:
            self._append(step | {"bay": bay.name})
        try:
            record = run_sync(self.identity.devnode, part, token, setup)
            signal, verdict = Signal.SYNC_DONE, "synced"
        except Exception as err:
            log.error("bay %s: sync failed: %s", bay.name, err)
            record = {
                "type": "sync",
                "error": str(err),
                "token_id": token.token_id,
                "token_created": token.created,
            }
            signal, verdict = Signal.FAULT, "sync failed"
        record |= {"bay": bay.name, "device": self.identity.describe(), "lights_shown": [signal.value]}
        record |= {"clock": clock}
        record |= self.exhibit_field()
        bay.phase, bay.finished = "done", now_iso()
        if self._append(record):
            bay.problem = None if signal is Signal.SYNC_DONE else f"sync: {record.get('error')}"
        else:
            bay.phase, signal = "not journaled", Signal.FAULT
            bay.problem = f"journal: {self.journal_error}"
        bay.lights.show(signal)  # "sync done" only once its record is on disk
        bay.verdict = verdict  # last: a reader of the verdict sees the lights already shown
        self.on_change()
        return True

    def _on_event(self, event: ScanEvent) -> None:
        bay = self.bay
        if isinstance(event, ScanHit):
            bay.hits += 1
            if event.hit.priority:
                bay.priority_hits += 1
                bay.lights.show(Signal.SCANNING_PRIORITY, bay.progress)
            self.on_change()
        elif isinstance(event, ScanProgress):
            # from the first second (the totals estimated at mount), never going back
            self._files_fraction = fraction_done(event, self._files_fraction)
            shown = self._files_fraction
            bay.progress = shown / 2 if shown is not None and self._sampling else shown
            signal = Signal.SCANNING_PRIORITY if bay.priority_hits else Signal.SCANNING
            bay.lights.show(signal, bay.progress)

    def _on_block_progress(self, sampled: int, planned: int) -> None:
        """The block sample after the files: the second half of the bay's progress."""
        bay = self.bay
        bay.phase = "sampling blocks"
        fraction = 0.5 + 0.5 * min(1.0, sampled / planned) if planned else 1.0
        bay.progress = max(fraction, bay.progress or 0.0)
        signal = Signal.SCANNING_PRIORITY if bay.priority_hits else Signal.SCANNING
        bay.lights.show(signal, bay.progress)
        self.on_change()

    def _on_block_hit(self, hit: BlockHit) -> None:
        """A known block in the raw device: a hit like a file's, red at once when priority."""
        bay = self.bay
        bay.hits += 1
        if hit.is_priority:
            bay.priority_hits += 1
            bay.lights.show(Signal.SCANNING_PRIORITY, bay.progress)
        self.on_change()

    def _journal(self, verdict: str, signal: Signal, seconds: float) -> bool:
        """Append the scan's record; True once it is on disk. ``lights_shown`` ends with the
        verdict's signal, which the bay shows only then."""
        result = self.result
        shown = self.bay.lights.shown[self._shown_from :]
        if self.bay.lights.signal is not signal:
            shown.append(signal.value)
        record: dict[str, Any] = {
            "type": "scan",
            "bay": self.bay.name,
            "device": self.identity.describe(),
            "filters": [
                {
                    "id": f.metadata.filter_id,
                    "name": f.metadata.name,
                    "signer": f.signer_key_id,
                    "provider": f.metadata.provider,
                    "created": iso_time(f.metadata.created),
                    "expires": None if f.metadata.expires is None else iso_time(f.metadata.expires),
                }
                for f in self.filters
            ],
            "exclusions": None if self.exclusions is None else self.exclusions.list_id,
            "mode": self.scan_config.mode,
            "started": self.bay.started,
            "finished": self.bay.finished,
            "seconds": round(seconds, 3),
            "verdict": verdict,
            "removed_early": self.unplugged,
            "lights_shown": shown,
            "notes": [*self.notes, *(result.device_notes if result is not None else [])],
            **self.exhibit_field(),
        }
        if result is not None:
            device = result.to_json()
            record["partitions"] = device["partitions"]
            record["partition_table"] = device["partition_table"]
            if result.storages:
                record["storages"] = device["storages"]
            record["device_problems"] = device["device_problems"]
            record["cleanup_problems"] = device["cleanup_problems"]
            record["scan"] = device["scan"]
            if result.blocks is not None:  # the block sample: its confidence, known blocks and offsets
                record["blocks"] = device["blocks"]
                record["block_hits"] = device["block_hits"]
                record["statement"] = device["statement"]  # "no match: every file checked; blocks 99%..."
            record["empty"] = self._empty(verdict)  # no match, and no regular file on the device
        return self._append(fitted_scan_record(record))

    def _empty(self, verdict: str) -> bool:
        """No match, and the device held no regular file at all: shown as "empty (0 files)"."""
        return verdict == "no_match" and self.result is not None and self.result.empty

    def exhibit_field(self) -> dict[str, Any]:
        """``{"exhibit": reference}`` for a record of this device, when it took one."""
        return {"exhibit": self.exhibit} if self.exhibit else {}

    def _append(self, record: dict[str, Any]) -> bool:
        """True once ``record`` is on disk; else the error is kept in ``journal_error`` and logged."""
        try:
            self.journal.append(record)
        except Exception as err:
            self.journal_error = str(err)
            log.error("bay %s: journal write failed: %s", self.bay.name, err)
            return False
        return True
