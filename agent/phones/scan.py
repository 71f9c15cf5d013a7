"""A phone's files through the shared scan: ``scan_phone(session, scanner) -> ScanReport``.

A phone is another source of files, not another engine: the order (``agent.scan.order``: camera,
download and messenger folders first), the plan (which digests, which sets: ``ScanPlan``), the
digests (``filters.digests``), the evidence and confirmation (``agent.scan.evidence``), the events,
the verdict rules and the report are the disk scan's. What differs is how a folder is listed and
how bytes are read: MTP and PTP answer one request at a time, so one thread walks and reads, best
first over a heap; a file's first pass asks only for the byte ranges the plan needs (three 4 KiB
partial reads for a sample digest), and a sample hit is confirmed by reading the file whole.

Never a green for what was not read: a folder that cannot be listed, a file that vanished or whose
bytes differ from its reported size, a name a filesystem could not hold, a tree deeper than
``MAX_DEPTH``, and the rest of the phone once it is unplugged or locked (``PhoneGone``) are errors
or unread files, so the verdict is ``incomplete`` unless something matched; hits found stay.

Paths in the report start with the storage's description: ``Internal shared storage/DCIM/x.jpg``.

Example::

    scanner = Scanner(filters)
    with GphotoBackend().open("usb:001,005") as session:
        report = scan_phone(session, session.storages(), scanner, on_event=print)
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from agent.phones.camera import ObjectGone, PhoneError, PhoneFile, PhoneGone, PhoneSession, Storage, join
from agent.scan.engine import Scanner
from agent.scan.estimate import UNKNOWN, refined
from agent.scan.events import (
    PROGRESS_INTERVAL,
    ScanEstimate,
    ScanEvent,
    ScanFinished,
    ScanHit,
    ScanProgress,
    ScanStarted,
)
from agent.scan.evidence import evidence_of, kinds_for_hit, kinds_to_confirm
from agent.scan.order import NORMAL, directory_class, directory_rank, file_rank
from agent.scan.plan import scan_report
from agent.scan.report import Counts, Hit, Problem, ScanReport, Timings
from filters.digests import FileChangedError, digest_by_reads
from filters.errors import printable

_T = TypeVar("_T")
MAX_DEPTH = 64  # deeper folders are not walked (an error: the verdict cannot be green)
MAX_PATH = 4096  # bytes of a shown path
LOOKUP_FILES = 32  # files read before their digests are looked up together
LOOKUP_SECONDS = 0.25  # ... or this long after the first of them was read


@dataclass(slots=True)
class _Folder:
    path: str  # the backend's path
    shown: bytes  # the report's path
    klass: int
    depth: int


@dataclass(slots=True)
class _Files:
    folder: _Folder
    files: list[PhoneFile]


@dataclass
class _Pending:
    folders: list[str] = field(default_factory=list)
    files: list[PhoneFile] = field(default_factory=list)
    shown: list[bytes] = field(default_factory=list)
    digests: list[dict[str, bytes]] = field(default_factory=list)
    since: float = 0.0


def storage_names(storages: Sequence[Storage]) -> list[str]:
    """What each storage is called in paths: its description, made unique and printable."""
    names: list[str] = []
    for storage in storages:
        base = printable(storage.description.strip() or storage.folder.strip("/") or "storage").replace(
            "/", "_"
        )
        name, n = base, 2
        while name in names:
            name, n = f"{base} ({n})", n + 1
        names.append(name)
    return names


def storage_estimate(storages: Sequence[Storage]) -> ScanEstimate:
    """What a phone's storages hold, for the progress fraction: their used bytes (capacity minus
    free space; None when a storage does not say both). MTP and PTP give no count of files, so the
    files are estimated from the mean size of those listed (``agent.scan.estimate.refined``). An
    Android's storage also holds apps and system data MTP does not show: the estimate is high, and
    the fraction low until the walk is done."""
    used = 0
    for storage in storages:
        if storage.dummy:
            continue
        if storage.capacity is None or storage.free is None or storage.capacity <= 0:
            return UNKNOWN
        used += max(0, storage.capacity - storage.free)
    return ScanEstimate(None, used)


def scan_phone(
    session: PhoneSession,
    storages: Sequence[Storage],
    scanner: Scanner,
    on_event: Callable[[ScanEvent], None] | None = None,
) -> ScanReport:
    """Scan every storage of an open phone session with ``scanner``'s plan, cancel flag and
    stop-at-first-priority setting; never raises for what a phone can do."""
    return _PhoneRun(session, storages, scanner, on_event).run()


class _PhoneRun:
    def __init__(
        self,
        session: PhoneSession,
        storages: Sequence[Storage],
        scanner: Scanner,
        on_event: Callable[[ScanEvent], None] | None,
    ) -> None:
        self.session, self.scanner, self.plan = session, scanner, scanner.plan
        self.on_event = on_event
        self.storages = [s for s in storages if not s.dummy]
        self.names = storage_names(self.storages)
        self.estimate = storage_estimate(self.storages) if self.storages else UNKNOWN
        self.counts = Counts()
        self.hits: list[Hit] = []
        self.errors: list[Problem] = []
        self.skipped: list[Problem] = []
        self.heap: list[tuple[int, int, _Folder | _Files]] = []
        self.seq = 0
        self.gone: PhoneGone | None = None
        self.stopped_at_priority = False
        self.started = time.monotonic()
        self.last_progress = self.started
        self.first_hit: float | None = None
        self.first_priority_hit: float | None = None
        self.files_done = 0
        self.bytes_listed = 0  # the sizes of the files listed (a phone lists them with the names)

    def push(self, rank: int, item: _Folder | _Files) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (-rank, -self.seq, item))  # equal ranks: last in, first out

    def emit(self, event: ScanEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken listener must not stop the scan
                pass

    def stopping(self) -> bool:
        return self.gone is not None or self.stopped_at_priority or self.scanner.cancel.is_set()

    def run(self) -> ScanReport:
        wall = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        roots = tuple(name.encode("utf-8", "surrogateescape") for name in self.names)
        filter_ids = tuple(p.contraband.metadata.filter_id for p in self.plan.filters)
        self.emit(
            ScanStarted(roots, self.plan.mode, 1, filter_ids, self.plan.first_pass_kinds, self.estimate)
        )
        for storage, shown in zip(self.storages, roots, strict=True):
            klass = directory_class(shown, NORMAL)
            self.push(directory_rank(klass), _Folder(storage.folder, shown, klass, 0))
        pending = _Pending()
        walk_s: float | None = None
        while self.heap:
            _, _, item = heapq.heappop(self.heap)
            if self.stopping():
                self.not_scanned(item)
                continue
            if isinstance(item, _Folder):
                self.list_folder(item)
            else:
                self.read_files(item, pending)
            self.progress(walk_done=False)
        if not self.stopping():
            walk_s = time.monotonic() - self.started
        self.look_up(pending)
        self.progress(walk_done=True)  # the real totals, last
        if self.gone is not None:
            self.errors.append(Problem(b"", f"phone: {self.gone.reason}", "phone_gone"))
        report = self.report(wall, walk_s, roots)
        self.emit(ScanFinished(report))
        return report

    def not_scanned(self, item: _Folder | _Files) -> None:
        if isinstance(item, _Files):
            self.counts.files_not_scanned += len(item.files)
            self.counts.bytes_seen += sum(f.size for f in item.files)
        elif not (self.gone or self.scanner.cancel.is_set() or self.stopped_at_priority):
            self.errors.append(Problem(item.shown, "folder not listed", "not_listed"))

    def list_folder(self, folder: _Folder) -> None:
        self.counts.directories += 1
        subfolders = self.listing(folder, "folders", self.session.folders)
        files = self.listing(folder, "files", self.session.files)
        good_files = [f for f in files if self.fit_name(folder, f.name, "file")]
        self.counts.files_seen += len(good_files)
        self.bytes_listed += sum(f.size for f in good_files)
        for phone_file in [f for f in good_files if f.problem is not None]:
            shown = folder.shown + b"/" + phone_file.name.encode("utf-8", "surrogateescape")
            self.fail(shown, f"no details: {phone_file.problem}", "no_details")
        good_files = [f for f in good_files if f.problem is None]
        for name in sorted(n for n in subfolders if self.fit_name(folder, n, "folder")):
            shown = folder.shown + b"/" + name.encode("utf-8", "surrogateescape")
            if folder.depth + 1 > MAX_DEPTH or len(shown) > MAX_PATH:
                self.errors.append(
                    Problem(shown, f"folder deeper than {MAX_DEPTH} levels: not walked", "too_deep")
                )
                continue
            klass = directory_class(name.encode("utf-8", "surrogateescape"), folder.klass)
            self.push(directory_rank(klass), _Folder(join(folder.path, name), shown, klass, folder.depth + 1))
        by_rank: dict[int, list[PhoneFile]] = {}
        for phone_file in sorted(good_files, key=lambda f: f.name):
            rank = file_rank(phone_file.name.encode("utf-8", "surrogateescape"), folder.klass)
            by_rank.setdefault(rank, []).append(phone_file)
        for rank, group in by_rank.items():
            self.push(rank, _Files(folder, group))

    def listing(self, folder: _Folder, what: str, lister: Callable[[str], list[_T]]) -> list[_T]:
        """A folder's subfolders or files; a failure is an error of that folder (its other part is
        still listed), and the end of the scan when the phone is gone."""
        if self.gone is not None:
            return []
        try:
            return lister(folder.path)
        except PhoneGone as err:
            self.gone = err
            self.errors.append(Problem(folder.shown, f"{what} not listed: {err.reason}", "phone_gone"))
        except PhoneError as err:
            code = "vanished" if isinstance(err, ObjectGone) else "list_failed"
            self.errors.append(Problem(folder.shown, f"cannot list its {what}: {err.reason}", code))
        return []

    def fit_name(self, folder: _Folder, name: str, what: str) -> bool:
        """A name a phone can send but a path cannot hold is an error, never silently dropped."""
        if name and name not in (".", "..") and "/" not in name and "\x00" not in name:
            return True
        shown = folder.shown + b"/" + printable(name).encode("utf-8", "surrogateescape")
        self.errors.append(
            Problem(shown, f"{what} with an impossible name {printable(repr(name))}", "bad_name")
        )
        return False

    def read_files(self, batch: _Files, pending: _Pending) -> None:
        kinds = self.plan.first_pass_kinds
        folder = batch.folder
        for index, phone_file in enumerate(batch.files):
            if self.stopping():
                rest = batch.files[index:]
                self.counts.files_not_scanned += len(rest)
                self.counts.bytes_seen += sum(f.size for f in rest)
                return
            shown = folder.shown + b"/" + phone_file.name.encode("utf-8", "surrogateescape")
            self.counts.bytes_seen += phone_file.size
            if phone_file.size == 0:
                self.counts.files_empty += 1
                self.files_done += 1
                continue
            try:
                found, read = digest_by_reads(
                    phone_file.size, kinds, self.reader(folder.path, phone_file.name)
                )
            except FileChangedError as err:
                self.fail(shown, f"{err}", "changed")
                continue
            except PhoneGone as err:
                self.gone = err
                self.fail(shown, f"read failed: {err.reason}", "phone_gone")
                continue
            except PhoneError as err:
                self.fail(
                    shown,
                    f"read failed: {err.reason}",
                    "vanished" if isinstance(err, ObjectGone) else "read_failed",
                )
                continue
            self.counts.bytes_read += read
            if not pending.files:
                pending.since = time.monotonic()
            pending.folders.append(folder.path)
            pending.files.append(phone_file)
            pending.shown.append(shown)
            pending.digests.append(found)
            if len(pending.files) >= LOOKUP_FILES or time.monotonic() - pending.since >= LOOKUP_SECONDS:
                self.look_up(pending)
            self.progress(walk_done=False)

    def fail(self, shown: bytes, reason: str, code: str) -> None:
        self.errors.append(Problem(shown, reason, code))
        self.files_done += 1

    def reader(self, folder: str, name: str) -> Callable[[int, int], bytes]:
        session = self.session
        return lambda offset, length: session.read(folder, name, offset, length)

    def look_up(self, pending: _Pending) -> None:
        if not pending.files:
            return
        folders, files, shown, digests = pending.folders, pending.files, pending.shown, pending.digests
        pending.folders, pending.files, pending.shown, pending.digests = [], [], [], []
        found = self.plan.first_pass_matches(digests)
        self.counts.files_read += len(files) - len(found)
        self.files_done += len(files) - len(found)
        for i, first in sorted(found.items()):
            file_digests = dict(digests[i])
            missing = kinds_to_confirm(first, file_digests)
            if missing:
                missing = kinds_for_hit(first, file_digests)  # and the report's MD5, SHA-1, SHA-256
            if missing and self.gone is None:
                try:
                    more, read = digest_by_reads(
                        files[i].size, missing, self.reader(folders[i], files[i].name)
                    )
                except PhoneGone as err:
                    self.gone = err  # still a hit: its sample matches stay unconfirmed
                except (PhoneError, FileChangedError):
                    pass  # still a hit, unconfirmed
                else:
                    file_digests.update(more)
                    self.counts.bytes_read += read
                    self.counts.files_confirmed += 1
            self.counts.files_read += 1
            self.files_done += 1
            excluded = self.plan.excluded(shown[i], file_digests)
            if excluded is not None:  # a reviewed false positive (agent/scan/exclusions.py): listed, no hit
                self.skipped.append(excluded)
                continue
            hit = Hit(shown[i], files[i].size, evidence_of(self.plan, first, file_digests), file_digests)
            self.hits.append(hit)
            now = time.monotonic() - self.started
            self.first_hit = self.first_hit if self.first_hit is not None else now
            if hit.priority:
                self.first_priority_hit = (
                    self.first_priority_hit if self.first_priority_hit is not None else now
                )
                self.stopped_at_priority = self.scanner.stop_at_first_priority
            self.emit(ScanHit(hit, now))

    def progress(self, walk_done: bool) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_INTERVAL and not walk_done:
            return
        self.last_progress = now
        elapsed = max(now - self.started, 1e-9)
        counts = self.counts
        bytes_found = self.bytes_listed
        files_found = counts.files_seen
        done = self.files_done
        left = max(0, files_found - done)  # as for disks: what is left, from the bytes per file so far
        bytes_to_read = counts.bytes_read + (left * counts.bytes_read // done if done else 0)
        walk_done = walk_done or not any(isinstance(item, _Folder) for _, _, item in self.heap)
        # a phone lists sizes with names: every file found is sized
        files_estimated, bytes_estimated = refined(
            self.estimate,
            walk_done=walk_done,
            files_found=files_found,
            entries_found=files_found + counts.directories,
            bytes_found=bytes_found,
            files_sized=files_found,
        )
        self.emit(
            ScanProgress(
                elapsed_s=elapsed,
                files_found=files_found,
                bytes_found=bytes_found,
                bytes_to_read=bytes_to_read,
                walk_done=walk_done,
                files_done=done,
                bytes_read=counts.bytes_read,
                hits=len(self.hits),
                priority_hits=sum(h.priority for h in self.hits),
                errors=len(self.errors),
                bytes_per_s=counts.bytes_read / elapsed,
                files_per_s=done / elapsed,
                files_estimated=files_estimated,
                bytes_estimated=bytes_estimated,
            )
        )

    def report(self, wall: str, walk_s: float | None, roots: tuple[bytes, ...]) -> ScanReport:
        counts = self.counts
        errors, skipped = sorted(self.errors), sorted(self.skipped)
        for problems, by_code in ((errors, counts.errors), (skipped, counts.skipped)):
            for p in problems:
                by_code[p.code] = by_code.get(p.code, 0) + 1
        hits = sorted(self.hits, key=lambda h: h.path)
        timings = Timings(
            workers=1,
            started_at=wall,
            elapsed_s=time.monotonic() - self.started,
            walk_s=walk_s,
            first_hit_s=self.first_hit,
            first_priority_hit_s=self.first_priority_hit,
        )
        return scan_report(
            self.plan, roots, counts, hits, errors, skipped, timings,
            cancelled=self.scanner.cancel.is_set(),
            stopped_at_priority=self.stopped_at_priority,
            walked=walk_s is not None and bool(self.storages),  # a phone that shows no storage: not read
        )  # fmt: skip
