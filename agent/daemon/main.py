"""The daemon: device source -> bay worker (read-only mount -> scan -> verdict) -> lights, journal.

One thread polls the device source, the signal pipe and a wake-up pipe (no busy loop); each device
gets a worker thread in its bay. With no valid filter, or a journal that cannot be written, the
kiosk shows its fault signal and scans nothing: it never shows green. A device that arrives while
the journal cannot be written makes the daemon try the journal again first (a ``journal_recovered``
record): once space is freed, that device is scanned (docs/reliability.md). SIGHUP reloads the filters
(the folder is also watched); SIGTERM stops every scan, unmounts, detaches, turns the lights off
and exits 0 within 5 s. systemd is told READY, STATUS, WATCHDOG and STOPPING.

Example::

    daemon = Daemon(load_config("/etc/fieldtriage/agent.toml"))
    sys.exit(daemon.run())
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agent.config import AgentConfig
from agent.daemon.bay import Bay, BayWorker, JournalSink, now_iso
from agent.daemon.filterstore import FilterStore
from agent.daemon.notify import SystemdNotifier
from agent.daemon.phone import PhoneWorker
from agent.daemon.status import stopped_status, write_status
from agent.daemon.sync import SyncSetup
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.devices.source import DeviceEvent, DeviceSource
from agent.exhibit.pending import PendingExhibits
from agent.exhibit.reader import LabelSource
from agent.journal.records import alarm_silenced_record, filters_record
from agent.lights.bay import BayLights, LightsBackend, LightsTicker
from agent.lights.button import KIOSK_BUTTON, AckButton
from agent.lights.signals import Signal
from agent.phones.camera import FoundPhone, PhoneBackend, PhoneGone, PhoneSession
from agent.scan.plan import ScanPlan
from filters.errors import FieldtriageError

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0
REFRESH_SECONDS = 2.0
STATUS_SECONDS = 1.0
INCOMPLETE_HOLD_SECONDS = 60.0
PULLED_SECONDS = 5.0  # a removal this soon after a scan ended "could not check": pulled mid-scan
EXHIBIT_ACK_SECONDS = 0.8  # idle bays show "exhibit scanned" (its pattern takes 0.6 s), then ready again
# a phone back in its bay this soon (it re-enumerates when set to File transfer) keeps its exhibit
EXHIBIT_REPLUG_SECONDS = 30.0


class Daemon:
    """Wires the steps together; every piece of hardware is injected (``build_daemon`` makes real ones)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        source: DeviceSource,
        mounter: Mounter,
        lights: dict[str, LightsBackend],
        journal: JournalSink,
        journal_health: Callable[[], str | None] = lambda: None,
        notifier: SystemdNotifier | None = None,
        ticker: bool = True,
        sync: SyncSetup | None = None,
        phones: PhoneBackend | None = None,
        labels: LabelSource | None = None,
        buttons: Mapping[str, AckButton] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.phones = phones
        self.mounter = mounter
        self.journal = journal
        self.journal_health = journal_health
        self.notifier = notifier or SystemdNotifier(None)
        self.sync = sync
        self.bays = [Bay(bay, BayLights(bay.name, lights[bay.name])) for bay in config.bays]
        self.filters = FilterStore(
            config.paths.filters,
            config.paths.trust,
            station_key=sync.station_key if sync else None,
            expiry_warning_days=config.filters.expiry_warning_days,
        )
        self.status_path = config.paths.runtime / "status.json"
        self.ticker = LightsTicker([b.lights for b in self.bays]) if ticker else None
        self.started = now_iso()
        self.state = "starting"
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._dirty = True
        # after a device is removed, its bay's lights return to ready at this monotonic time
        self._ready_at: dict[str, float] = {}
        self._waiting: list[DeviceEvent] = []  # plugs held until the bay's old worker has ended
        self.labels = labels  # the barcode scanner's exhibit labels (agent/exhibit), or None
        # acknowledge buttons by bay name (KIOSK_BUTTON: the kiosk's one, for every bay): a press is
        # queued from the button's thread and handled in the loop (_acknowledge)
        self.buttons = dict(buttons or {})
        self._presses: list[str] = []
        self._presses_lock = threading.Lock()
        for key, button in self.buttons.items():
            button.watch(functools.partial(self._pressed, key))
        self.exhibits = PendingExhibits(config.exhibit.timeout_seconds)
        self._ack_until = 0.0  # idle bays show "exhibit scanned" until then (monotonic)
        self._phone_workers: dict[str, PhoneWorker] = {}  # each bay's last phone worker
        self._last_workers: dict[str, BayWorker] = {}  # each bay's last worker, reaped or not

    # -- signals and wake-ups -------------------------------------------------------------------
    def wake(self) -> None:
        self._dirty = True
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass

    def request_stop(self) -> None:
        self._stop.set()
        self.wake()

    def request_reload(self) -> None:
        self._reload.set()
        self.wake()

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    # -- the loop -------------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            self._install_signal_handlers()
        self.config.paths.runtime.mkdir(parents=True, exist_ok=True)
        self.filters.refresh(force=True)
        self._journal_filters()
        self._show_idle()
        self.state = "running"
        self._write_status()
        self.notifier.send("READY=1", f"STATUS={self._summary()}")
        selector = selectors.DefaultSelector()
        selector.register(self.source.fileno(), selectors.EVENT_READ, "source")
        selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        if self.labels is not None:
            selector.register(self.labels.fileno(), selectors.EVENT_READ, "labels")
        last_refresh = last_status = last_watchdog = time.monotonic()
        try:
            while not self._stop.is_set():
                # at most REFRESH_SECONDS, less while an exhibit acknowledgement plays or is due
                timeout = min(self.source.timeout() or REFRESH_SECONDS, self._exhibit_timeout())
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        _drain(self._wake_read)
                self._poll_labels()  # before the devices: a label is scanned before its device is plugged
                self._acknowledge()  # acknowledge buttons pressed since: the alarms they silence
                for event in self.source.poll():
                    self._handle(event)
                now = time.monotonic()
                if self._reload.is_set() or now - last_refresh >= REFRESH_SECONDS:
                    if self.filters.refresh(force=self._reload.is_set()):
                        self._dirty = True
                        self._journal_filters()
                    self._reload.clear()
                    last_refresh = now
                self._reap_and_idle(now)
                waiting, self._waiting = self._waiting, []
                for event in waiting:
                    self._handle(event)
                if self._dirty or now - last_status >= STATUS_SECONDS:
                    self._write_status()
                    self._dirty, last_status = False, now
                if self.notifier.watchdog_interval and now - last_watchdog >= self.notifier.watchdog_interval:
                    self.notifier.send("WATCHDOG=1", f"STATUS={self._summary()}")
                    last_watchdog = now
        finally:
            selector.close()
            self._drop_exhibit("the kiosk stopped")
            self._shutdown()
            if self.labels is not None:
                self.labels.close()
        return 0

    def _handle(self, event: DeviceEvent) -> None:
        identity = event.identity
        if event.kind == "unplugged":
            self._waiting = [w for w in self._waiting if w.identity.devpath != identity.devpath]
            for occupied in self.bays:
                if occupied.device is None or occupied.device.devpath != identity.devpath:
                    continue
                if occupied.worker is not None and occupied.worker.is_alive():
                    occupied.worker.unplugged = True  # the worker ends "could not check", held a while
                    occupied.worker.cancel.set()
                else:
                    occupied.device = None
                    now = time.monotonic()
                    hold = 0.0
                    if self._just_failed(occupied, now):
                        hold, occupied.phase = INCOMPLETE_HOLD_SECONDS, "removed early"
                    self._ready_at[occupied.name] = now + hold
            self._dirty = True
            return
        self._reap_and_idle(time.monotonic())  # a worker that just ended frees its bay first
        bay = self._bay_for(identity)
        if bay is None and self._ending_in(identity):
            self._waiting.append(event)  # a phone re-enumerating in its bay while its old worker ends
            return
        if bay is None:
            log.warning("no free bay for %s at port %s; not scanned", identity.label(), identity.port_path)
            self._journal({"type": "not_scanned", "device": identity.describe(), "reason": "no free bay"})
            return
        self._retry_journal()
        problem = self._fault()
        exhibit = self._exhibit_for(bay, identity)
        if problem and self.sync is None:
            log.error("not scanning %s: %s", identity.label(), problem)
            bay.device, bay.phase, bay.verdict, bay.problem = identity, "not scanned", None, problem
            bay.progress, bay.hits, bay.priority_hits = None, 0, 0
            bay.started = bay.finished = now_iso()
            bay.exhibit = exhibit
            bay.lights.show(Signal.FAULT)
            self._journal(
                {"type": "not_scanned", "bay": bay.name, "device": identity.describe(), "reason": problem}
                | ({"exhibit": exhibit} if exhibit else {})
            )
            self._dirty = True
            return
        self._ready_at.pop(bay.name, None)
        if identity.kind == "phone":
            self._start_phone(bay, identity, problem, exhibit)
            return
        worker = BayWorker(
            bay,
            identity,
            self.mounter,
            self.filters.filters,
            self.config.scan,
            self.journal,
            on_change=self.wake,
            sync=self.sync,
            refusal=problem,  # with a fault the worker only looks for a sync stick
            exclusions=self.filters.exclusions,
            blocks=self.config.blocks,
            exhibit=exhibit,
        )
        bay.worker = self._last_workers[bay.name] = worker
        worker.start()

    def _start_phone(
        self, bay: Bay, identity: DeviceIdentity, problem: str | None, exhibit: str | None = None
    ) -> None:
        if self.phones is None:
            problem = problem or "phones cannot be read here (no MTP/PTP backend)"
        backend = self.phones or _NoPhones()
        worker = PhoneWorker(
            bay, identity, backend, self.filters.filters, self.config.scan, self.journal, self.wake, problem,
            exclusions=self.filters.exclusions, exhibit=exhibit,
        )  # fmt: skip
        bay.worker = self._last_workers[bay.name] = worker
        self._phone_workers[bay.name] = worker
        worker.start()

    def _retry_journal(self) -> None:
        """A device arrived while the journal cannot be written: try again (space may have been
        freed). A small ``journal_recovered`` record starts a new segment; if it is on disk, the
        journal is healthy again and the device is scanned, else it is refused as before."""
        problem = self.journal_health()
        if problem is None:
            return
        try:
            self.journal.append({"type": "journal_recovered", "after": problem})
        except Exception as err:
            log.error("journal still cannot be written: %s", err)
            return
        log.warning("journal writable again (after %s)", problem)
        self._dirty = True

    def _just_failed(self, bay: Bay, now: float) -> bool:
        """A device removed within ``PULLED_SECONDS`` of its scan ending "could not check" with
        failed reads was pulled out mid-scan: a phone's read fails the moment it goes, before udev
        tells the daemon, or the mount fails the moment a stick goes. Its amber stays as long as for a
        device pulled while its worker ran. A scan that read all it could (an encrypted stick) and
        is taken out at once is not."""
        worker = self._last_workers.get(bay.name)
        ended = worker.ended if worker is not None else None
        result = worker.result if worker is not None else None
        read_failed = result is not None and (
            bool(result.report.errors) if result.report is not None else not result.partitions
        )  # reads failed, or the device could not even be opened and mounted
        return (
            bay.verdict == "incomplete"
            and read_failed
            and ended is not None
            and now - ended <= PULLED_SECONDS
        )

    def _ending_in(self, identity: DeviceIdentity) -> bool:
        """A bay for ``identity``'s port whose worker was told its device went and has not ended."""
        return any(
            bay.worker is not None
            and bay.worker.is_alive()
            and bay.worker.unplugged
            and fnmatch.fnmatchcase(identity.port_path, bay.config.port)
            for bay in self.bays
        )

    def _bay_for(self, identity: DeviceIdentity) -> Bay | None:
        for bay in self.bays:
            if (
                not bay.busy
                and bay.device is None
                and fnmatch.fnmatchcase(identity.port_path, bay.config.port)
            ):
                return bay
        return None

    def _fault(self) -> str | None:
        if not self.filters.filters:
            return "no valid filter: " + ("; ".join(self.filters.problems) or "none loaded")
        try:  # quick mode with filters that have no sample set could check nothing
            ScanPlan.build(self.filters.filters, self.config.scan.mode)  # type: ignore[arg-type]
        except FieldtriageError as err:
            return f'scan.mode = {self.config.scan.mode!r}: {err.reason}; use "auto"'
        return self.journal_health()

    def _reap_and_idle(self, now: float) -> None:
        for bay in self.bays:
            worker = bay.worker
            if worker is not None and not worker.is_alive():
                worker.join()
                bay.worker = None
                if worker.unplugged:
                    bay.device = None
                    self._ready_at[bay.name] = now + INCOMPLETE_HOLD_SECONDS
                self._dirty = True
            ready_at = self._ready_at.get(bay.name)
            if bay.busy or bay.device is not None or (ready_at is not None and now < ready_at):
                continue
            if now < self._ack_until and bay.lights.signal is Signal.EXHIBIT_SCANNED:
                continue  # a scanned exhibit label's short pattern plays out first
            self._ready_at.pop(bay.name, None)
            fault = self._fault()
            bay.phase, bay.verdict, bay.progress, bay.problem = "ready", None, None, fault
            # a filter in use that expires within filters.expiry_warning_days: ready, and says so
            expiring = not fault and bool(self.filters.expiry_warnings())
            bay.lights.show(Signal.FAULT if fault else Signal.READY_EXPIRING if expiring else Signal.READY)

    def _show_idle(self) -> None:
        self._reap_and_idle(time.monotonic())

    def _journal_filters(self) -> None:
        """Tell the station which filters this kiosk carries (at start and after every change)."""
        record = filters_record([{**f, "filter_id": f["id"]} for f in self.filters.describe()])
        exclusions = self.filters.describe_exclusions()  # the station's reviewed false positives
        self._journal(record | {"problems": list(self.filters.problems), "exclusions": exclusions})

    def _journal(self, record: dict[str, Any]) -> None:
        try:
            self.journal.append(record)
        except Exception as err:
            log.error("journal write failed: %s", err)

    # -- exhibit references (a barcode scanner's labels) -----------------------------------------
    def _poll_labels(self) -> None:
        """Labels read since: each becomes the pending reference; one that waited too long is dropped."""
        now = time.monotonic()
        if self.labels is not None:
            try:
                labels = self.labels.poll()
            except Exception as err:  # a scanner must never stop the kiosk
                log.error("barcode scanner: %s", err)
                labels = []
            for label in labels:
                self._label_scanned(label, now)
        dropped = self.exhibits.expire(now)
        if dropped is not None:
            log.warning("exhibit %s dropped: %s", dropped["exhibit"], dropped["reason"])
            self._journal(dropped)
            self._dirty = True

    def _label_scanned(self, label: str, now: float) -> None:
        replaced = self.exhibits.scan(label)
        if replaced is not None:
            log.warning("exhibit %s dropped: %s", replaced["exhibit"], replaced["reason"])
            self._journal(replaced)
        self._dirty = True
        idle: list[Bay] = []
        if not self._fault():  # else the fault signal stays (the device still takes the label)
            self._ack_until = now + EXHIBIT_ACK_SECONDS
            for bay in self.bays:
                ready_at = self._ready_at.get(bay.name)
                if not bay.busy and bay.device is None and (ready_at is None or now >= ready_at):
                    bay.lights.show(Signal.EXHIBIT_SCANNED)
                    idle.append(bay)
        shown = f"acknowledged by {', '.join(b.name for b in idle)}" if idle else "no idle bay acknowledges"
        log.info("exhibit %s scanned (%s): the next device plugged into a bay takes it", label, shown)

    def _exhibit_timeout(self) -> float:
        """Seconds the loop may wait: until an acknowledgement ends or a pending reference is due."""
        now = time.monotonic()
        due = [self._ack_until - now] if now < self._ack_until else []
        pending = self.exhibits.due(now)
        return max(0.0, min([*due, *([pending] if pending is not None else []), REFRESH_SECONDS]))

    def _exhibit_for(self, bay: Bay, identity: DeviceIdentity) -> str | None:
        """The reference the device plugged into ``bay`` takes: a phone back in its bay within
        ``EXHIBIT_REPLUG_SECONDS`` with the same serial, gone before it could be read (it re-enumerates
        when set to File transfer), keeps its own; else the pending one, if any."""
        last = self._phone_workers.get(bay.name)
        if (
            identity.kind == "phone"
            and last is not None
            and last.exhibit
            and last.unplugged
            and last.result is None
            and last.ended is not None
            and time.monotonic() - last.ended <= EXHIBIT_REPLUG_SECONDS
            and last.identity.serial
            and last.identity.serial == identity.serial
        ):
            return last.exhibit
        taken = self.exhibits.take()
        return taken.reference if taken is not None else None

    def _drop_exhibit(self, reason: str) -> None:
        dropped = self.exhibits.drop(reason)
        if dropped is not None:
            self._journal(dropped)

    # -- the acknowledge buttons ----------------------------------------------------------------
    def _pressed(self, key: str) -> None:
        """A button was pressed (called in the button's thread): the loop silences and journals."""
        with self._presses_lock:
            self._presses.append(key)
        self.wake()

    def _acknowledge(self) -> None:
        """Silence what each press silences: its bay's priority alarm or match beeps (every bay's
        for the kiosk's button); the lights stay, and each silencing is journaled."""
        with self._presses_lock:
            presses, self._presses = self._presses, []
        for key in presses:
            for bay in self.bays:
                if key not in (KIOSK_BUTTON, bay.name):
                    continue
                silenced = bay.lights.silence()
                if silenced is None:
                    continue
                button = "kiosk" if key == KIOSK_BUTTON else "bay"
                log.info(
                    "bay %s: %s silenced by the %s's acknowledge button", bay.name, silenced.value, button
                )
                device = bay.device.describe() if bay.device is not None else None
                self._journal(alarm_silenced_record(bay.name, silenced.value, now_iso(), button, device))
                self._dirty = True

    # -- status and shutdown --------------------------------------------------------------------
    def _summary(self) -> str:
        fault = self._fault()
        busy = sum(1 for b in self.bays if b.busy)
        return f"fault: {fault}" if fault else f"{len(self.filters.filters)} filters, {busy} scanning"

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": os.getpid(),
            "started": self.started,
            "updated": now_iso(),
            "fault": self._fault(),
            "filters": self.filters.describe(),
            "filter_problems": self.filters.problems,
            "filter_warnings": self.filters.expiry_warnings(),
            "journal": {"healthy": self.journal_health() is None, "error": self.journal_health()},
            "bays": [b.describe() for b in self.bays],
            "kiosk": {"name": self.config.kiosk.name, "location": self.config.kiosk.location},
            "exhibit": {
                "pending": self.exhibits.describe(),
                "scanners": self.labels.attached() if self.labels is not None else None,
            },
        }

    def _write_status(self) -> None:
        try:
            write_status(self.status_path, self.status())
        except OSError as err:
            log.error("cannot write %s: %s", self.status_path, err)

    def _shutdown(self) -> None:
        self.state = "stopping"
        self.notifier.send("STOPPING=1")
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for bay in self.bays:
            if bay.worker is not None:
                bay.worker.cancel.set()
        for bay in self.bays:
            if bay.worker is not None:
                bay.worker.join(max(0.0, deadline - time.monotonic()))
        if self.ticker is not None:
            self.ticker.close()
        for bay in self.bays:
            bay.lights.close()
        try:
            self.journal.close()
        except Exception as err:
            log.error("closing the journal failed: %s", err)
        self.state = "stopped"
        try:  # the last status says so: no filter in use, every bay off (agent status: not running)
            write_status(self.status_path, stopped_status(self.status()))
        except OSError as err:
            log.error("cannot write %s: %s", self.status_path, err)
        for button in self.buttons.values():
            button.close()
        self.source.close()
        os.close(self._wake_read)
        os.close(self._wake_write)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class _NoPhones:
    """Where no phone backend could be loaded: every phone is refused (the worker shows the fault)."""

    def detect(self) -> list[FoundPhone]:
        return []

    def open(self, port: str) -> PhoneSession:
        raise PhoneGone(port, "no MTP/PTP backend")
