"""The scan engine: ``Scanner(filters, ...).scan(roots, on_event) -> ScanReport``.

One thread walks (``walker``) and hands out batches of one directory's files; ``workers`` threads
open, read and hash each file of a batch in one tight loop (``dir_fd``-relative opens; hashlib and
blake3 release the GIL on large buffers, so reading one file overlaps hashing another). With one
worker the walking thread reads the batches itself: passing the GIL between two threads around every
system call cost more than the reading of small files. With several workers (unless
``reader_processes=False``) and files read only once (no confirmation pending on an open
descriptor), ``workers - 1`` reader processes (``reader_processes``) read whole batches and the
walking thread reads when they are all busy; it looks their digests up and counts their outcomes
(``worker_state.account``). A worker keeps the digests of up to 256 read files and looks them up
together (``ContrabandFilter.lookup_many``: one vectorised probe per set), before it waits for more
work, and at once after a file of 1 MiB or more. A progress thread sends ``ScanProgress`` every 0.25
s, its totals estimated before the walk has found them (``estimate``: the roots' filesystems, or
what the caller says). Each regular file is opened once; its first pass computes exactly
``ScanPlan.first_pass_kinds`` in one read, then its size is checked again with ``fstat``; in
``auto`` mode a sample hit is confirmed by reading the file whole for the whole-file kinds of the
covering sets (the only case where bytes of a file are read twice: its 12 KiB of samples), so while
that can happen the descriptors of files waiting for their lookup stay open (at most 64 over all
workers).

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
import stat
import threading
import time
from collections.abc import Callable, Sequence

from agent.scan.device import default_workers
from agent.scan.estimate import UNKNOWN, filesystem_estimate
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
from agent.scan.exclusions import ExclusionList
from agent.scan.plan import FilterPlan, Mode, ScanPlan, scan_report
from agent.scan.process_feed import ProcessFeed
from agent.scan.reader import (
    SMALL_FILE,
    CancelFlag,
    DigestResult,
    NotRegularFile,
    ReadCancelled,
    buffer_digester,
    open_no_follow,
    open_regular,
    read_digests,
    read_rest,
)
from agent.scan.reader_processes import ReaderPool
from agent.scan.report import Hit, Problem, ScanReport, Timings
from agent.scan.walker import (
    BATCH_FILES,
    SHARED_BATCH_FILES,
    Batch,
    TreeWalker,
    errno_code,
    os_reason,
)
from agent.scan.worker_state import (
    Outcome,
    PendingLookups,
    WorkerTally,
    account,
    check_unchanged,
    internal_error,
    progress_of,
    totals_of,
)
from filters.digests import FileChangedError
from filters.errors import UsageError
from filters.model import ContrabandFilter, SetMatch

Opener = Callable[[int, bytes], tuple[int, int]]
Reader = Callable[[int, int, Sequence[str], CancelFlag | None], DigestResult]
MAX_WORKERS = 64
FLUSH_FILES = 256  # files read before their digests are looked up together (one numpy pass)
FLUSH_SIZE = 1 << 20  # a file this large is looked up at once (its read dwarfs the lookup)
OPEN_FILES = 64  # at most this many descriptors kept open for confirmation, over all workers
READING_THREADS = 1  # with reader processes: workers = processes + this (the walking thread reads too)


class Scanner:
    """Scans folders (or files) with one or more filters; see the module docstring.

    ``cancel`` stops a scan from another thread (verdict ``incomplete`` unless something matched).
    ``reader_processes=False`` keeps every worker a thread (the daemon, unless ``scan.workers`` is
    set: reader processes are not yet measured under its sandbox). ``opener`` and ``reader`` replace
    ``reader.open_regular``/``read_digests`` (tests inject errors).
    """

    def __init__(
        self,
        filters: Sequence[ContrabandFilter],
        *,
        mode: Mode = "auto",
        workers: int | None = None,
        stop_at_first_priority: bool = False,
        cancel: threading.Event | None = None,
        reader_processes: bool = True,
        opener: Opener = open_regular,
        reader: Reader = read_digests,
        exclusions: ExclusionList | None = None,
    ) -> None:
        self.plan = ScanPlan.build(filters, mode, exclusions)
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise UsageError("--workers", f"must be between 1 and {MAX_WORKERS}, not {workers}")
        self.workers = workers
        self.stop_at_first_priority = stop_at_first_priority
        self.cancel = cancel or threading.Event()
        self.reader_processes = reader_processes
        self.opener = opener
        self.reader = reader

    def scan(
        self,
        roots: Sequence[str | bytes | os.PathLike[str]],
        on_event: Callable[[ScanEvent], None] | None = None,
        *,
        estimate: ScanEstimate | None = None,
    ) -> ScanReport:
        """``estimate``: what the roots hold, for the progress fraction before the walk is done
        (``agent.scan.estimate``); None: from the roots' filesystems (``filesystem_estimate``)."""
        encoded = tuple(os.fsencode(r) for r in roots)
        if estimate is None:
            estimate = filesystem_estimate(encoded)
        return _Run(self, encoded, on_event, estimate).run()


class _Run:
    """The state of one ``Scanner.scan`` call."""

    def __init__(
        self,
        scanner: Scanner,
        roots: tuple[bytes, ...],
        on_event: Callable[[ScanEvent], None] | None,
        estimate: ScanEstimate = UNKNOWN,
    ) -> None:
        self.scanner = scanner
        self.plan = scanner.plan
        self.roots = roots
        self.on_event = on_event
        self.estimate = estimate
        self.workers = scanner.workers or default_workers(roots)
        self.stop = threading.Event()  # cancel, or first priority hit with stop_at_first_priority
        self.stopped_at_priority = False
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * self.workers)
        # Several workers, files read once, default reading: reader processes (reader_processes).
        self.keep_open = self.plan.may_read_again()
        default_io = scanner.opener is open_regular and scanner.reader is read_digests
        allowed = scanner.reader_processes
        use_processes = allowed and self.workers >= 2 and not self.keep_open and default_io
        self.processes = self.workers - READING_THREADS if use_processes else 0
        self.feed: ProcessFeed | None = None
        alone = self.workers == 1 or use_processes  # the walking thread reads (besides processes)
        self.walker = TreeWalker(self, BATCH_FILES if alone else SHARED_BATCH_FILES)
        self.tallies = [WorkerTally() for _ in range(self.workers)]
        self.event_lock = threading.Lock()
        self.event_errors: list[str] = []
        self.started = time.monotonic()
        self.first_hit: float | None = None
        self.first_priority_hit: float | None = None
        # Files are looked up in batches; while a sample hit may need its file read again, their
        # descriptors stay open until then, so fewer of them wait (open files: workers x this).
        self.flush_files = max(1, OPEN_FILES // self.workers) if self.keep_open else FLUSH_FILES
        # One worker: the walking thread reads the files itself, between listings. Handing batches
        # to another thread costs more than reading small files: the two threads would pass the GIL
        # back and forth around every system call.
        self.inline = PendingLookups() if alone else None
        # The digests of a small file's bytes (used when the first pass reads files whole).
        self.digest_buffer = buffer_digester(self.plan.first_pass_kinds)

    # WalkSink
    def submit(self, batch: Batch) -> None:
        if self.feed is not None and self.feed.submit(batch):
            return  # (a reader process will read it, or the feed hands it back through ``apply``)
        if self.inline is None:
            self.queue.put(batch)
        else:
            self.take(self.tallies[0], batch, self.inline)

    def take(self, tally: WorkerTally, batch: Batch, pending: PendingLookups) -> None:
        try:
            self.scan_batch(tally, batch, pending)
        finally:
            self.walker.release(batch.directory)

    def stopped(self) -> bool:
        if self.scanner.cancel.is_set():
            self.stop.set()
        if self.stop.is_set() and self.feed is not None:
            self.feed.pool.cancel()
        return self.stop.is_set()

    def apply(self, batch: Batch, outcomes: list[Outcome] | None) -> None:  # ProcessFeed answers
        """Count a process's outcomes; ``None``: its process died, so read the batch here."""
        pending = self.inline
        assert pending is not None
        largest = 0
        try:
            if outcomes is None:
                self.scan_batch(self.tallies[0], batch, pending)
            else:
                largest = account(self.tallies[0], pending, batch.directory.prefix, batch.files, outcomes)
        finally:
            self.walker.release(batch.directory)
        if len(pending.paths) >= self.flush_files or largest >= FLUSH_SIZE:
            self.flush(self.tallies[0], pending)

    def run(self) -> ScanReport:
        wall = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.emit(
            ScanStarted(
                self.roots,
                self.plan.mode,
                self.workers,
                tuple(p.contraband.metadata.filter_id for p in self.plan.filters),
                self.plan.first_pass_kinds,
                self.estimate,
            )
        )
        workers = [] if self.inline else self.tallies
        threads = [threading.Thread(target=self.work, args=(t,), daemon=True) for t in workers]
        finished = threading.Event()
        ticker = threading.Thread(target=self.tick, args=(finished,), daemon=True)
        for thread in [*threads, ticker]:
            thread.start()
        walk_s: float | None = None
        if self.processes and self.inline is not None:
            pool = ReaderPool(self.processes)
            self.feed = ProcessFeed(pool, self.plan.first_pass_kinds, self.apply, self.stopped)
        try:
            self.walker.walk(self.roots)
            walk_s = time.monotonic() - self.started
        except KeyboardInterrupt:
            self.scanner.cancel.set()  # report what was done: verdict incomplete unless a match
            self.stop.set()
        finally:
            if self.feed is not None and self.inline is not None:
                pending = self.inline
                with self.feed.pool:
                    self.feed.drain(lambda: self.flush(self.tallies[0], pending))
            if self.inline is not None:
                self.flush(self.tallies[0], self.inline)
            for _ in threads:
                self.queue.put(None)
            for thread in threads:
                thread.join()
            finished.set()
            ticker.join()
            self.walker.close_all()
        self.emit(self.progress())  # the real totals, last
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
            if self.scanner.cancel.is_set():
                self.stop.set()  # a read in progress watches ``stop``: a huge file ends at once too
            self.emit(self.progress())

    def progress(self) -> ScanProgress:
        return progress_of(self.walker.tally, self.tallies, time.monotonic() - self.started, self.estimate)

    def work(self, tally: WorkerTally) -> None:
        pending = PendingLookups()
        get, empty = self.queue.get, self.queue.empty
        try:
            while True:
                if pending.paths and empty():
                    self.flush(tally, pending)  # look up what was read before waiting for more
                batch = get()
                if batch is None:
                    return
                self.take(tally, batch, pending)
        finally:
            self.flush(tally, pending)

    def scan_batch(self, tally: WorkerTally, batch: Batch, pending: PendingLookups) -> None:
        """The first pass over a batch of one directory's files, in one loop: open, read, hash,
        check the size again; each file's digests then wait in ``pending`` for a batch lookup.

        With the default opener and reader their work is done here inline (the same system calls
        and checks as ``open_regular`` and ``read_digests``, without two calls per file)."""
        dir_fd, prefix = batch.directory.fd, batch.directory.prefix
        opener, reader = self.scanner.opener, self.scanner.reader
        digest_buffer = self.digest_buffer
        inline_open = opener is open_regular
        inline_read = reader is read_digests and self.plan.whole_file_first
        kinds = self.plan.first_pass_kinds
        stop, cancel = self.stop, self.scanner.cancel
        keep_open, flush_files = self.keep_open, self.flush_files
        paths, sizes, digests, fds = pending.paths, pending.sizes, pending.digests, pending.fds
        fstat, read, close, S_ISREG = os.fstat, os.read, os.close, stat.S_ISREG
        for name in batch.files:
            if stop.is_set() or cancel.is_set():
                stop.set()
                tally.files_not_scanned += 1
                continue
            try:
                if inline_open:
                    fd = open_no_follow(dir_fd, name)
                    try:
                        info = fstat(fd)
                        if not S_ISREG(info.st_mode):
                            mode = info.st_mode
                            raise NotRegularFile(
                                errno.EINVAL, f"not a regular file when opened (mode {mode:o})"
                            )
                    except BaseException:
                        close(fd)
                        raise
                    size = info.st_size
                else:
                    fd, size = opener(dir_fd, name)
            except NotRegularFile as err:
                tally.skipped.append(Problem(prefix + name, str(err.strerror), "changed_type"))
                tally.files_done += 1
                continue
            except OSError as err:
                code = "symlink" if err.errno == errno.ELOOP else errno_code(err)  # became a symlink
                target = tally.skipped if code == "symlink" else tally.errors
                target.append(Problem(prefix + name, os_reason("cannot open", err), code))
                tally.files_done += 1
                continue
            except Exception as err:  # a bug must not hang the scan or pass for "no match"
                tally.errors.append(internal_error(prefix + name, err))
                tally.files_done += 1
                continue
            tally.bytes_seen += size
            tally.files_sized += 1
            try:
                if size == 0:
                    tally.files_empty += 1
                    tally.files_done += 1
                    continue
                if inline_read and size <= SMALL_FILE:
                    data = read(fd, size + 1)
                    if len(data) != size:
                        data = read_rest(fd, size, data)
                    found = digest_buffer(data)
                    tally.bytes_read += size
                else:
                    result = reader(fd, size, kinds, stop)
                    found = result.digests
                    tally.bytes_read += result.bytes_read
                if fstat(fd).st_size != size:
                    raise FileChangedError(errno.EIO, f"file changed size while read (was {size} bytes)")
            except ReadCancelled:
                tally.files_not_scanned += 1
                continue  # (closed below)
            except FileChangedError as err:
                tally.errors.append(Problem(prefix + name, str(err.strerror), "changed"))
            except OSError as err:
                tally.errors.append(Problem(prefix + name, os_reason("read failed", err), errno_code(err)))
            except Exception as err:
                tally.errors.append(internal_error(prefix + name, err))
            else:
                paths.append(prefix + name)
                sizes.append(size)
                digests.append(found)
                if keep_open:
                    fds.append(fd)  # a sample hit may need the file read whole
                    fd = -1
                if len(paths) >= flush_files or size >= FLUSH_SIZE:
                    self.flush(tally, pending)
                    paths, sizes, digests, fds = pending.paths, pending.sizes, pending.digests, pending.fds
                continue
            finally:
                if fd >= 0:
                    close(fd)
            tally.files_done += 1  # an error above

    def flush(self, tally: WorkerTally, pending: PendingLookups) -> None:
        """Look the pending files up (one ``lookup_many`` per filter and kind), confirm and record
        their hits, and close the descriptors kept open for confirmation."""
        paths, sizes, digests, fds = pending.take()
        if not paths:
            return
        try:
            try:
                found = self.plan.first_pass_matches(digests)
            except Exception as err:  # a bug must not pass for "no match"
                tally.errors += [internal_error(path, err) for path in paths]
                tally.files_done += len(paths)
                return
            tally.files_read += len(paths) - len(found)
            tally.files_done += len(paths) - len(found)
            for i, first in sorted(found.items()):
                fd = fds[i] if fds else -1
                try:
                    self.record_hit(tally, fd, sizes[i], paths[i], digests[i], first)
                except FileChangedError as err:
                    tally.errors.append(Problem(paths[i], str(err.strerror), "changed"))
                except OSError as err:
                    tally.errors.append(Problem(paths[i], os_reason("read failed", err), errno_code(err)))
                except Exception as err:
                    tally.errors.append(internal_error(paths[i], err))
                tally.files_done += 1
        finally:
            for fd in fds:
                os.close(fd)

    def record_hit(
        self,
        tally: WorkerTally,
        fd: int,
        size: int,
        path: bytes,
        digests: dict[str, bytes],
        first: list[tuple[FilterPlan, SetMatch]],
    ) -> None:
        """Confirm sample matches by reading the file whole (its descriptor is still open), in the
        same read computing the report's MD5, SHA-1 and SHA-256 it lacks, then record the hit;
        raises like a read when the confirmation read fails."""
        digests = dict(digests)
        missing = kinds_to_confirm(first, digests)
        if missing and fd >= 0:
            missing = kinds_for_hit(first, digests)
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                confirm = self.scanner.reader(fd, size, missing, self.stop)
            except ReadCancelled:
                pass  # still a hit: its sample matches stay unconfirmed (None)
            else:
                digests.update(confirm.digests)
                tally.bytes_read += confirm.bytes_read
                tally.files_confirmed += 1
                check_unchanged(fd, size)
        tally.files_read += 1
        excluded = self.plan.excluded(path, digests)
        if excluded is not None:  # a reviewed false positive (agent/scan/exclusions.py): listed, no hit
            tally.skipped.append(excluded)
            return
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
        counts, hits, errors, skipped = totals_of(self.walker.tally, self.tallies)
        timings = Timings(
            workers=self.workers,
            started_at=wall,
            elapsed_s=time.monotonic() - self.started,
            walk_s=walk_s,
            first_hit_s=self.first_hit,
            first_priority_hit_s=self.first_priority_hit,
        )
        return scan_report(
            self.plan, self.roots, counts, hits, errors, skipped, timings,
            cancelled=self.scanner.cancel.is_set(),
            stopped_at_priority=self.stopped_at_priority,
            walked=walk_s is not None,
        )  # fmt: skip
