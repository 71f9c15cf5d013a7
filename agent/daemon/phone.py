"""A phone in a bay: wait until it can be read, then the same scan, verdict, lights and journal.

``PhoneWorker`` is a ``BayWorker`` whose device is opened over MTP/PTP (``PhoneBackend``) instead
of mounted. Until the phone shows a storage it shows the state the officer can act on ("unlock the
phone and choose File transfer", "unlock the iPhone and tap Trust"), journals each state once with
the phone's identity, and looks again every ``POLL_SECONDS``: an Android that is unlocked shows its
storage in the same session, and a phone that changes mode re-enumerates (a new udev event starts
a new worker), so either way the scan starts by itself. Unplugged before it could be read: the
state was journaled, no verdict is shown. Then ``scan_phone`` and the bay's usual ending: the
verdict is lit only once its record is on disk.

Example::

    worker = PhoneWorker(bay, identity, GphotoBackend(), filters, ScanConfig(), journal)
    worker.start()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from agent.config import ScanConfig
from agent.daemon.bay import Bay, BayWorker, JournalSink, now_iso
from agent.device_scan import DeviceScanResult
from agent.devices.identity import DeviceIdentity
from agent.lights.signals import Signal
from agent.phones.camera import PhoneBackend, PhoneError, PhoneSession, Storage
from agent.phones.detect import STATE_MESSAGES, PhoneState, gphoto_port, phone_state
from agent.phones.scan import scan_phone
from agent.scan.engine import Scanner
from agent.scan.exclusions import ExclusionList
from filters.errors import printable
from filters.model import ContrabandFilter

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
STATE_SIGNALS: dict[PhoneState, Signal] = {"unlock": Signal.PHONE_UNLOCK, "trust": Signal.PHONE_TRUST}


class PhoneWorker(BayWorker):
    def __init__(
        self,
        bay: Bay,
        identity: DeviceIdentity,
        backend: PhoneBackend,
        filters: Sequence[ContrabandFilter],
        scan_config: ScanConfig,
        journal: JournalSink,
        on_change: Callable[[], None] = lambda: None,
        refusal: str | None = None,
        poll_seconds: float = POLL_SECONDS,
        exclusions: ExclusionList | None = None,
        exhibit: str | None = None,
    ) -> None:
        super().__init__(
            bay, identity, None, filters, scan_config, journal, on_change, None, refusal, exclusions, exhibit
        )
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.port = gphoto_port(identity)
        self.states: list[str] = []

    def _mount_and_scan(self) -> str | None:
        if self.refusal is not None:
            self._not_scanned(self.refusal)
            return None
        opened = self._wait_until_readable()
        if opened is None:
            return None  # unplugged or cancelled before it could be read: its states are journaled
        session, storages = opened
        scanner = Scanner(
            self.filters,
            mode=self.scan_config.mode,  # type: ignore[arg-type]
            workers=1,
            stop_at_first_priority=self.scan_config.stop_at_first_priority,
            cancel=self.cancel,
            reader_processes=False,
            exclusions=self.exclusions,
        )
        bay = self.bay
        bay.phase = "scanning"
        bay.lights.show(Signal.SCANNING, 0.0)
        self.on_change()
        try:
            report = scan_phone(session, storages, scanner, on_event=self._on_event)
        finally:
            session.close()
        self.result = DeviceScanResult(
            self.port,
            report.verdict,
            self.identity,
            scheme=self.identity.phone_kind,
            storages=[s.describe() for s in storages],
            report=report,
        )
        if not storages:
            self.result.device_problems.append("the phone shows no storage")
        return report.verdict

    def _wait_until_readable(self) -> tuple[PhoneSession, list[Storage]] | None:
        """An open session and its storages once the phone shows one; None when it goes first."""
        while not self.cancel.is_set():
            session: PhoneSession | None = None
            storages: list[Storage] | None = None
            reason = ""
            if self.identity.phone_kind != "charge_only":
                try:
                    session = self.backend.open(self.port)
                    storages = session.storages()
                except PhoneError as err:
                    reason = err.reason
                    if session is not None:
                        session.close()
                    session, storages = None, None
            state = phone_state(self.identity, storages)
            if state == "ready" and session is not None and storages is not None:
                self._journal_state(state, storages, reason)
                return session, [s for s in storages if not s.dummy]
            if session is not None:
                session.close()
            self._journal_state(state, storages or [], reason)
            self.cancel.wait(self.poll_seconds)
        return None

    def _journal_state(self, state: PhoneState, storages: Sequence[Storage], reason: str) -> None:
        """Shown and journaled once per change: the station knows a locked phone was presented."""
        if self.states and self.states[-1] == state:
            return
        self.states.append(state)
        bay = self.bay
        message = STATE_MESSAGES[state]
        log.info(
            "bay %s: %s: %s%s",
            bay.name,
            self.identity.label(),
            message,
            f" ({printable(reason)})" if reason else "",
        )
        if state != "ready":
            bay.phase, bay.problem = "waiting for the phone", message
            bay.lights.show(STATE_SIGNALS[state])
        else:
            bay.problem = None
        record: dict[str, Any] = {
            "type": "phone_state",
            "bay": bay.name,
            "device": self.identity.describe(),
            "state": state,
            "message": message,
            "storages": [s.describe() for s in storages],
            "at": now_iso(),
            **self.exhibit_field(),
        }
        if reason:
            record["reason"] = reason
        self._append(record)
        self.on_change()
