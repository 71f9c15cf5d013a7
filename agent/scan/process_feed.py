"""The walking thread's side of the reader processes: batches gathered into parcels, sent to a
process with room, answers applied in order; what no process can take is read by the walking thread
(``agent.scan.reader_processes`` runs the processes, ``agent.scan.worker_state`` counts the outcomes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from agent.scan.reader_processes import Folder, ReaderPool
from agent.scan.walker import Batch
from agent.scan.worker_state import Outcome

MAX_PATH = 4000  # a longer folder path is read by the walking thread (through its descriptor)
PARCEL_FILES = 64  # files gathered (over one or more folders) before they are sent to a process


class ProcessFeed:
    """The walking thread's side. Batches are gathered into parcels of about ``PARCEL_FILES`` files
    (one message, one answer: a process's costs per message are paid once per parcel, not per
    folder); a parcel goes to a process with room for it; when all are full the walking thread reads
    the parcel's first batch itself and tries again. Answers are counted with ``apply`` (``None``:
    read the batch here); ``drain`` sends what is left and waits for the last answers."""

    def __init__(
        self,
        pool: ReaderPool,
        kinds: Sequence[str],
        apply: Callable[[Batch, list[Outcome] | None], None],
        stopped: Callable[[], bool],
    ) -> None:
        self.pool, self.kinds = pool, tuple(kinds)
        self.apply, self.stopped = apply, stopped
        self.parcel: list[tuple[Batch, Folder]] = []
        self.parcel_files = 0
        self.sent: dict[int, list[Batch]] = {}
        self.answers: list[tuple[Batch, list[Outcome] | None]] = []  # received, not yet applied
        try:
            self.cwd: bytes | None = os.getcwdb()  # a process opens folders by absolute path
        except OSError:
            self.cwd = None  # (working folder gone) relative roots are read by the scanning thread

    def submit(self, batch: Batch) -> bool:
        """True when ``batch`` joined a parcel (the feed then owns it); False: read it yourself."""
        self.receive(0)
        directory = batch.directory
        prefix = directory.prefix
        if prefix.startswith(b"/"):
            path = prefix
        elif self.cwd is not None:
            path = self.cwd + b"/" + prefix
        else:
            return False
        if len(path) > MAX_PATH:
            return False
        ident = directory.ident
        if ident is None:
            info = os.fstat(directory.fd)
            ident = directory.ident = (info.st_dev, info.st_ino)
        self.parcel.append((batch, (path, ident, batch.files)))
        self.parcel_files += len(batch.files)
        if self.parcel_files >= PARCEL_FILES:
            self.ship()
        return True

    def ship(self) -> None:
        """Send the parcel to a process, reading its batches here one by one while none has room."""
        while self.parcel:
            token = self.pool.send([folder for _, folder in self.parcel], self.kinds)
            if token is not None:
                self.sent[token] = [batch for batch, _ in self.parcel]
                break
            batch, _ = self.parcel.pop(0)
            self.apply(batch, None)
            self.receive(0)
        self.parcel, self.parcel_files = [], 0

    def receive(self, timeout: float) -> None:
        """Apply answers one batch at a time: if applying one raises (^C), the others stay for
        ``drain``."""
        for token, answer in self.pool.collect(timeout):
            batches = self.sent.pop(token)
            self.answers += zip(batches, answer or [None] * len(batches), strict=True)
        while self.answers:
            batch, outcomes = self.answers.pop(0)
            self.apply(batch, outcomes)

    def drain(self, idle: Callable[[], None]) -> None:
        self.ship()
        while self.sent or self.answers:
            if self.stopped():
                self.pool.cancel()
            idle()
            self.receive(0.05)
            # Parcels no live process owes any more (an answer lost to ^C while it was taken):
            # read here, so that the scan ends and no file is left uncounted.
            owed = self.pool.held()
            for token in [t for t in self.sent if t not in owed]:
                self.answers += [(batch, None) for batch in self.sent.pop(token)]
