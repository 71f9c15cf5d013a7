"""The scan engine: ``Scanner(filters, ...).scan(roots, on_event) -> ScanReport``.

One thread walks (``walker``) and hands out batches of files; ``workers`` threads open, read, hash
and look each file up (hashlib and blake3 release the GIL on large buffers, so reading one file
overlaps hashing another); a progress thread sends ``ScanProgress`` every 0.25 s. Each regular file
is opened once; its first pass computes exactly ``ScanPlan.first_pass_kinds`` in one read; in
``auto`` mode a sample hit is confirmed by reading the file whole for the whole-file kinds of the
covering sets (the only case where bytes of a file are read twice: its 48 KiB of samples).

Example::

    scanner = Scanner([load_filter("kiosk.ftf", trust)], mode="auto")
    report = scanner.scan([b"/mnt/evidence"], on_event=print)
    report.verdict  # 'priority_match', 'match', 'no_match' or 'incomplete'
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.scan.device import default_workers
from agent.scan.events import (
    PROGRESS_INTERVAL,
    ScanEvent,
    ScanFinished,
    ScanHit,
    ScanProgress,
    ScanStarted,
)
from agent.scan.evidence import evidence_of
from agent.scan.plan import Mode, ScanPlan, lookup_consulted
from agent.scan.reader import DigestResult, NotRegularFile, ReadCancelled, open_regular, read_digests
from agent.scan.report import Counts, FilterSummary, Hit, Problem, ScanReport, SetSummary, Timings, verdict_of
from agent.scan.walker import Batch, TreeWalker, errno_code, os_reason
from filters.digests import FileChangedError
from filters.errors import UsageError
from filters.model import ContrabandFilter

Opener = Callable[[int, bytes], tuple[int, int]]
Reader = Callable[[int, int, Sequence[str], threading.Event | None], DigestResult]
MAX_WORKERS = 64


@dataclass
class _WorkerTally:
    """Written by one worker only; summed by the progress thread and at the end."""

    files_done: int = 0
    files_read: int = 0
    files_confirmed: int = 0
    files_empty: int = 0
    files_not_scanned: int = 0
    bytes_read: int = 0
    hits: list[Hit] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)


class Scanner:
    """Scans folders (or files) with one or more filters; see the module docstring.

    ``cancel`` stops a scan from another thread (verdict ``incomplete`` unless something matched).
    ``opener`` and ``reader`` replace ``reader.open_regular``/``read_digests`` (tests inject errors).
    """

    def __init__(
        self,
        filters: Sequence[ContrabandFilter],
        *,
        mode: Mode = "auto",
        workers: int | None = None,
        stop_at_first_priority: bool = False,
        cancel: threading.Event | None = None,
        opener: Opener = open_regular,
        reader: Reader = read_digests,
    ) -> None:
        self.plan = ScanPlan.build(filters, mode)
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise UsageError("--workers", f"must be between 1 and {MAX_WORKERS}, not {workers}")
        self.workers = workers
        self.stop_at_first_priority = stop_at_first_priority
        self.cancel = cancel or threading.Event()
        self.opener = opener
        self.reader = reader

    def scan(
        self,
        roots: Sequence[str | bytes | os.PathLike[str]],
        on_event: Callable[[ScanEvent], None] | None = None,
    ) -> ScanReport:
        return _Run(self, tuple(os.fsencode(r) for r in roots), on_event).run()


class _Run:
    """The state of one ``Scanner.scan`` call."""

    def __init__(
        self, scanner: Scanner, roots: tuple[bytes, ...], on_event: Callable[[ScanEvent], None] | None
    ) -> None:
        self.scanner = scanner
        self.plan = scanner.plan
        self.roots = roots
        self.on_event = on_event
        self.workers = scanner.workers or default_workers(roots)
        self.stop = threading.Event()  # cancel, or first priority hit with stop_at_first_priority
        self.stopped_at_priority = False
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * self.workers)
        self.walker = TreeWalker(self, self.plan.read_cost)
        self.tallies = [_WorkerTally() for _ in range(self.workers)]
        self.event_lock = threading.Lock()
        self.event_errors: list[str] = []
        self.started = time.monotonic()
        self.first_hit: float | None = None
        self.first_priority_hit: float | None = None

    # WalkSink
    def submit(self, batch: Batch) -> None:
        self.queue.put(batch)

    def stopped(self) -> bool:
        if self.scanner.cancel.is_set():
            self.stop.set()
        return self.stop.is_set()

    def run(self) -> ScanReport:
        wall = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.emit(
            ScanStarted(
                self.roots,
                self.plan.mode,
                self.workers,
                tuple(p.contraband.metadata.filter_id for p in self.plan.filters),
                self.plan.first_pass_kinds,
            )
        )
        threads = [threading.Thread(target=self.work, args=(t,), daemon=True) for t in self.tallies]
        finished = threading.Event()
        ticker = threading.Thread(target=self.tick, args=(finished,), daemon=True)
        for thread in [*threads, ticker]:
            thread.start()
        walk_s: float | None = None
        try:
            self.walker.walk(self.roots)
            walk_s = time.monotonic() - self.started
        except KeyboardInterrupt:
            self.scanner.cancel.set()  # report what was done: verdict incomplete unless a match
            self.stop.set()
        finally:
            for _ in threads:
                self.queue.put(None)
            for thread in threads:
                thread.join()
            finished.set()
            ticker.join()
            self.walker.close_all()
        report = self.report(wall, walk_s)
        self.emit(ScanFinished(report))
        return report

    def emit(self, event: ScanEvent) -> None:
        if self.on_event is None:
            return
        with self.event_lock:
            try:
                self.on_event(event)
            except Exception as err:  # a broken listener must not stop the scan
                self.event_errors.append(f"{type(err).__name__}: {err}")

    def tick(self, finished: threading.Event) -> None:
        while not finished.wait(PROGRESS_INTERVAL):
            self.emit(self.progress())

    def progress(self) -> ScanProgress:
        walk = self.walker.tally
        elapsed = max(time.monotonic() - self.started, 1e-9)
        files_done = sum(t.files_done for t in self.tallies)
        bytes_read = sum(t.bytes_read for t in self.tallies)
        hits = [h for t in self.tallies for h in list(t.hits)]
        return ScanProgress(
            elapsed_s=elapsed,
            files_found=walk.files_seen,
            bytes_found=walk.bytes_seen,
            bytes_to_read=walk.bytes_to_read,
            walk_done=walk.done,
            files_done=files_done + walk.files_empty,
            bytes_read=bytes_read,
            hits=len(hits),
            priority_hits=sum(h.priority for h in hits),
            errors=len(walk.errors) + sum(len(t.errors) for t in self.tallies),
            bytes_per_s=bytes_read / elapsed,
            files_per_s=files_done / elapsed,
        )

    def work(self, tally: _WorkerTally) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            try:
                for task in batch.files:
                    if self.stopped():
                        tally.files_not_scanned += 1
                        continue
                    path = batch.directory.prefix + task.name
                    try:
                        self.scan_file(tally, batch.directory.fd, path)
                    except Exception as err:  # a bug must not hang the scan or pass for "no match"
                        tally.errors.append(
                            Problem(path, f"internal error: {type(err).__name__}: {err}", "internal")
                        )
                        tally.files_done += 1
            finally:
                self.walker.release(batch.directory)

    def scan_file(self, tally: _WorkerTally, dir_fd: int, path: bytes) -> None:
        name = path[path.rfind(b"/") + 1 :]
        try:
            fd, size = self.scanner.opener(dir_fd, name)
        except NotRegularFile as err:
            tally.skipped.append(Problem(path, str(err.strerror), "changed_type"))
            tally.files_done += 1
            return
        except OSError as err:
            code = "symlink" if err.errno == errno.ELOOP else errno_code(err)  # ELOOP: became a symlink
            target = tally.skipped if code == "symlink" else tally.errors
            target.append(Problem(path, os_reason("cannot open", err), code))
            tally.files_done += 1
            return
        try:
            if size == 0:
                tally.files_empty += 1
            else:
                self.read_and_look_up(tally, fd, size, path)
        except ReadCancelled:
            tally.files_not_scanned += 1
            return
        except FileChangedError as err:
            tally.errors.append(Problem(path, str(err.strerror), "changed"))
        except OSError as err:
            tally.errors.append(Problem(path, os_reason("read failed", err), errno_code(err)))
        finally:
            os.close(fd)
        tally.files_done += 1

    def read_and_look_up(self, tally: _WorkerTally, fd: int, size: int, path: bytes) -> None:
        result = self.scanner.reader(fd, size, self.plan.first_pass_kinds, self.stop)
        digests = dict(result.digests)
        tally.bytes_read += result.bytes_read
        first = [(p, m) for p in self.plan.filters for m in lookup_consulted(p, digests)]
        if not first:
            _check_unchanged(fd, size)
            tally.files_read += 1
            return
        missing = sorted(
            {k for p, m in first if m.kind == "sample" for k in p.confirm_kinds(m.filter_set.index)}
            - set(digests)
        )
        if missing:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                confirm = self.scanner.reader(fd, size, tuple(missing), self.stop)
            except ReadCancelled:
                pass  # still a hit: its sample matches stay unconfirmed (None)
            else:
                digests.update(confirm.digests)
                tally.bytes_read += confirm.bytes_read
                tally.files_confirmed += 1
        _check_unchanged(fd, size)
        tally.files_read += 1
        hit = Hit(path, size, evidence_of(self.plan, first, digests), digests)
        tally.hits.append(hit)
        now = time.monotonic() - self.started
        with self.event_lock:
            self.first_hit = min(now, self.first_hit or now)
            if hit.priority:
                self.first_priority_hit = min(now, self.first_priority_hit or now)
        if hit.priority and self.scanner.stop_at_first_priority:
            self.stopped_at_priority = True
            self.stop.set()
        self.emit(ScanHit(hit, now))

    def report(self, wall: str, walk_s: float | None) -> ScanReport:
        walk = self.walker.tally
        counts = Counts(
            directories=walk.directories,
            files_seen=walk.files_seen,
            bytes_seen=walk.bytes_seen,
            files_empty=walk.files_empty + sum(t.files_empty for t in self.tallies),
        )
        hits: list[Hit] = []
        errors, skipped = list(walk.errors), list(walk.skipped)
        for t in self.tallies:
            counts.files_read += t.files_read
            counts.files_confirmed += t.files_confirmed
            counts.files_not_scanned += t.files_not_scanned
            counts.bytes_read += t.bytes_read
            hits += t.hits
            errors += t.errors
            skipped += t.skipped
        for problems, by_code in ((errors, counts.errors), (skipped, counts.skipped)):
            problems.sort()
            for p in problems:
                by_code[p.code] = by_code.get(p.code, 0) + 1
        hits.sort(key=lambda h: h.path)
        cancelled = self.scanner.cancel.is_set()
        complete = not (errors or cancelled or self.stopped_at_priority or counts.files_not_scanned)
        complete = complete and walk_s is not None
        timings = Timings(
            workers=self.workers,
            started_at=wall,
            elapsed_s=time.monotonic() - self.started,
            walk_s=walk_s,
            first_hit_s=self.first_hit,
            first_priority_hit_s=self.first_priority_hit,
        )
        return ScanReport(
            verdict=verdict_of(hits, complete),
            complete=complete,
            cancelled=cancelled,
            stopped_at_first_priority=self.stopped_at_priority,
            mode=self.plan.mode,
            roots=self.roots,
            first_pass_kinds=self.plan.first_pass_kinds,
            filters=tuple(_summarise(p.contraband, self.plan) for p in self.plan.filters),
            counts=counts,
            hits=hits,
            errors=errors,
            skipped=skipped,
            timings=timings,
        )


def _check_unchanged(fd: int, size: int) -> None:
    if os.fstat(fd).st_size != size:
        raise FileChangedError(5, f"file changed size while read (was {size} bytes)")


def _summarise(contraband: ContrabandFilter, plan: ScanPlan) -> FilterSummary:
    filter_plan = next(p for p in plan.filters if p.contraband is contraband)
    sets = tuple(
        SetSummary(
            s.index,
            s.kind,
            s.category,
            s.priority,
            s.count,
            s.item_group,
            filter_plan.roles[s.index],
            filter_plan.skipped_reason(s.index),
        )
        for s in contraband.sets
    )
    meta = contraband.metadata
    return FilterSummary(
        meta.filter_id,
        meta.name,
        contraband.source,
        contraband.signer_key_id,
        contraband.fully_covered_by_samples(),
        sets,
    )
