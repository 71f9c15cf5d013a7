"""Reader processes: small files read and hashed on more than one CPU (threads cannot: the GIL).

``ReaderPool(n)``: ``multiprocessing`` "forkserver" processes only (never "fork": the kiosk daemon is
multi-threaded and blake3 has a thread pool). The scan never waits for them: the walking thread
reads inline from the start and processes join as they report ready (the first start, which brings
the forkserver up, runs in a background thread; later ones take ~2 ms). A process receives
``(token, absolute folder path, (st_dev, st_ino), names, kinds)``, opens the folder
(``O_DIRECTORY|O_NOFOLLOW``), checks it is the folder the walk listed, and reads each name with the
calls and checks of ``Engine.scan_batch``: ``OPEN_FLAGS|O_NOATIME`` (EPERM: again without it),
``fstat`` type check (nothing but a regular file is read), size from that ``fstat``, one read of
``size + 1`` hashed by ``buffer_digester`` up to ``SMALL_FILE``; a larger file is hashed through a
read-only mapping (``mapped_digests``: no copy, as ``b3sum`` does); then the ``fstat`` size check;
each file opened once (again only when its process died, below). It answers ``(token, outcomes)``:
one outcome per name, same order (``worker_state.OK``...). A folder not opened or not the one
listed: every name an error. A process that dies (an I/O error of the medium inside a mapping is a
SIGBUS; or killed) loses its batches: the scanning thread reads them again with ``read``, where an
I/O error is that file's ``EIO``. Cancel: a shared byte read per file (and per 16 MiB of a mapped
file); files not read come back ``NOT_SCANNED``. The parent looks digests up and counts
(``worker_state.account``), so reports do not depend on the number of processes. Processes exit when
their pipe closes; those idle at the end of a scan serve the next one (``close_idle`` ends them).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import mmap
import multiprocessing
import os
import select
import signal
import stat
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from agent.scan.reader import (
    SMALL_FILE,
    ReadCancelled,
    buffer_digester,
    open_no_follow,
    read_digests,
    read_rest,
    stream_hasher,
)
from agent.scan.walker import DIR_FLAGS, errno_code, os_reason
from agent.scan.worker_state import EMPTY, ERROR, NOT_SCANNED, OK, SKIPPED, Outcome, internal_reason
from filters.digests import (
    SAMPLE_CHUNK,
    SAMPLE_KIND,
    FileChangedError,
    sample_digest_from_parts,
    sample_offsets,
)

MAP_CHUNK = 16 << 20  # a mapped file is hashed this much at a time (cancel is checked between)
Folder = tuple[bytes, tuple[int, int], list[bytes]]  # absolute path, (st_dev, st_ino), names
Answer = list[list[Outcome] | None] | None  # per folder of a parcel; None: the process died
IN_FLIGHT = 4  # batches sent to one process before its first answer (it never waits for the next)
_READY = "ready"
_server = threading.Event()  # a process was started: the forkserver of this program is running


class _SharedFlag:
    """``is_set()`` over a shared byte (what ``read_digests`` checks while it streams)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def is_set(self) -> bool:
        return bool(self.raw.value)


def read_names(
    dir_fd: int,
    names: Sequence[bytes],
    kinds: Sequence[str],
    digest_buffer: Callable[[bytes], dict[str, bytes]],
    cancel: _SharedFlag,
) -> list[Outcome]:
    """The outcomes of reading ``names`` in ``dir_fd`` (the checks of ``Engine.scan_batch``)."""
    whole_file_first = any(k != SAMPLE_KIND for k in kinds)
    fstat, read, close, S_ISREG = os.fstat, os.read, os.close, stat.S_ISREG
    flag = cancel.raw
    outcomes: list[Outcome] = []
    append = outcomes.append
    for name in names:
        if flag.value:
            append((NOT_SCANNED, 0))
            continue
        try:
            fd = open_no_follow(dir_fd, name)
        except OSError as err:
            code = "symlink" if err.errno == errno.ELOOP else errno_code(err)  # became a symlink
            append((SKIPPED if code == "symlink" else ERROR, code, os_reason("cannot open", err), 0))
            continue
        except Exception as err:
            append((ERROR, "internal", internal_reason(err), 0))
            continue
        size = 0
        try:
            info = fstat(fd)
            if not S_ISREG(info.st_mode):
                reason = f"not a regular file when opened (mode {info.st_mode:o})"
                append((SKIPPED, "changed_type", reason, 0))
                continue
            size = info.st_size
            if size == 0:
                append((EMPTY, 0))
                continue
            if whole_file_first and size <= SMALL_FILE:
                data = read(fd, size + 1)
                if len(data) != size:
                    data = read_rest(fd, size, data)
                found, bytes_read = digest_buffer(data), size
            elif whole_file_first:
                found, bytes_read = mapped_digests(fd, size, kinds, cancel)
            else:
                found, bytes_read = read_digests(fd, size, kinds, cancel)
            if fstat(fd).st_size != size:
                raise FileChangedError(errno.EIO, f"file changed size while read (was {size} bytes)")
            append((OK, size, found, bytes_read))
        except ReadCancelled:
            append((NOT_SCANNED, size))
        except FileChangedError as err:
            append((ERROR, "changed", str(err.strerror), size))
        except OSError as err:
            append((ERROR, errno_code(err), os_reason("read failed", err), size))
        except Exception as err:
            append((ERROR, "internal", internal_reason(err), size))
        finally:
            close(fd)
    return outcomes


def mapped_digests(
    fd: int, size: int, kinds: Sequence[str], cancel: _SharedFlag
) -> tuple[dict[str, bytes], int]:
    """``read_digests`` of a large file through read-only mappings: hashed in place, no copy.

    Only in a reader process: an I/O error of the medium inside a mapped page (or the file
    shrinking) is a SIGBUS, which ends this process; the scanning thread then reads its batch again
    with ``read``, where the same error is an ``EIO`` error of that file. The file is mapped
    ``MAP_CHUNK`` bytes at a time (bounded address space, also on a 32-bit kiosk); a file whose
    first window cannot be mapped is read as usual.
    """
    if size <= SMALL_FILE:
        return read_digests(fd, size, kinds, cancel)
    whole = [k for k in kinds if k != SAMPLE_KIND]
    hashers = [stream_hasher(k) for k in whole]
    samples = sample_offsets(size) if SAMPLE_KIND in kinds else ()
    parts: list[bytes] = []
    for start in range(0, size, MAP_CHUNK):
        if cancel.is_set():
            raise ReadCancelled
        length = min(MAP_CHUNK, size - start)
        try:
            window = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=start)
        except (OSError, ValueError, OverflowError):
            if start == 0:
                return read_digests(fd, size, kinds, cancel)
            raise
        with window, memoryview(window) as view:
            with contextlib.suppress(AttributeError, OSError):
                window.madvise(mmap.MADV_SEQUENTIAL)
            for hasher in hashers:
                hasher.update(view)
            # sample blocks are 4 KiB aligned, windows 16 MiB aligned: a block is in one window
            parts += [
                bytes(view[o - start : o - start + SAMPLE_CHUNK])
                for o in samples
                if start <= o < start + length
            ]
    found = {k: h.digest() for k, h in zip(whole, hashers, strict=True)}
    if samples:
        found[SAMPLE_KIND] = sample_digest_from_parts(size, parts)
    return found, size


def read_folder(
    path: bytes, ident: tuple[int, int], names: Sequence[bytes], kinds: Sequence[str], cancel: _SharedFlag
) -> list[Outcome] | None:
    """Open the folder by its path, check it is the one listed, read ``names`` in it; None when
    the path does not lead to that folder (any reason): the scanning thread, which holds the
    folder open, reads the batch itself."""
    try:
        dir_fd = os.open(path, DIR_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(dir_fd)
        if (info.st_dev, info.st_ino) != ident:
            return None
        return read_names(dir_fd, names, kinds, _digester(tuple(kinds)), cancel)
    finally:
        os.close(dir_fd)


_digester = functools.lru_cache(maxsize=16)(buffer_digester)  # per tuple of kinds


def _serve(conn: Connection, raw_flag: Any) -> None:
    """A reader process: answers requests until its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C: the scan cancels (the shared flag)
    cancel = _SharedFlag(raw_flag)
    try:
        conn.send(_READY)
        while True:
            token, folders, kinds = conn.recv()
            answer: list[list[Outcome] | None] = []
            for path, ident, names in folders:
                try:
                    answer.append(read_folder(path, ident, names, kinds, cancel))
                except Exception as err:  # a bug: every file of the batch is an error, never dropped
                    answer.append([(ERROR, "internal", internal_reason(err), 0)] * len(names))
            conn.send((token, answer))
    except (EOFError, OSError):
        return  # the scan closed the pipe


class _Reader:
    __slots__ = ("conn", "flag", "process", "tokens")

    def __init__(self, conn: Connection, process: Any, flag: Any) -> None:
        self.conn, self.process, self.flag = conn, process, flag
        self.tokens: list[tuple[int, int]] = []  # (token, number of names) in the order sent


_idle: list[_Reader] = []  # ready processes of finished scans, taken by the next (no start cost)
_idle_lock = threading.Lock()
MAX_IDLE = 4


class ReaderPool:
    """Up to ``count`` reader processes; used by one thread (``send``/``collect``/``close``), except
    ``cancel``. Processes left idle by a finished scan serve the next one: a process imports the
    program's main module when it starts (CPython 3.11's forkserver does not preload it), ~0.3 s."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._ctx = multiprocessing.get_context("forkserver")
        # Processes fork from the server with this module imported (takes effect when the server
        # starts, once per program).
        self._ctx.set_forkserver_preload(["__main__", __name__])
        self._lock = threading.Lock()
        self._new: list[_Reader] = []  # started by the background thread, not yet polled
        self._cancelled = False
        self._starting: list[_Reader] = []
        self._ready: list[_Reader] = []
        self._token = 0
        self._poller = select.poll()  # the pipes of processes started (answers, or the end)
        self._by_fd: dict[int, _Reader] = {}
        self._starter: threading.Thread | None = None
        self.deaths: list[int | None] = []  # exit codes of processes that died during this scan
        with _idle_lock:
            reused, _idle[:] = _idle[:count], _idle[count:]
        for reader in reused:
            reader.flag.value = 0
            self._watch(reader)
        self._ready += reused
        self._to_start = count - len(reused)
        if not self._to_start or _server.is_set():  # a start then takes ~2 ms (walking thread)
            return
        self._to_start -= 1  # the first start brings the server up: in the background
        self._starter = threading.Thread(target=self._start_one, daemon=True)
        self._starter.start()

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_one(self) -> None:
        """Start a process; on any failure (no descriptors left on a deep tree, no shared memory,
        no fork) start no more: the walking thread reads instead."""
        try:
            parent_end, child_end = self._ctx.Pipe()
        except Exception:
            self._no_more_starts()
            return
        try:
            flag = self._ctx.RawValue("b", self._cancelled)
            process = self._ctx.Process(target=_serve, args=(child_end, flag), daemon=True)
            process.start()
        except Exception:
            self._no_more_starts()
            parent_end.close()
            return
        finally:
            child_end.close()  # the process's end: its death then closes the pipe
        _server.set()
        with self._lock:
            self._new.append(_Reader(parent_end, process, flag))

    def _no_more_starts(self) -> None:
        with self._lock:
            self._to_start = 0

    def _watch(self, reader: _Reader) -> None:
        self._by_fd[reader.conn.fileno()] = reader
        self._poller.register(reader.conn.fileno(), select.POLLIN)

    def _take_new(self) -> None:
        if _server.is_set():
            with self._lock:  # (the background starter may have set it to 0)
                start = self._to_start > 0
                self._to_start -= start
            if start:
                self._start_one()
        if self._new:
            with self._lock:
                new, self._new = self._new, []
            for reader in new:
                self._watch(reader)
            self._starting += new

    def ready(self, timeout: float) -> int:
        """Wait (at most ``timeout`` s) until every process is ready; how many are (to warm up)."""
        deadline = time.monotonic() + timeout
        starter = self._starter
        while self._to_start > 0 or self._new or self._starting or (starter and starter.is_alive()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for token, _ in self.collect(min(left, 0.05)):  # (no batch was sent)
                raise AssertionError(f"unexpected answer to batch {token}")
        return len(self._ready)

    def cancel(self) -> None:
        self._cancelled = True
        for reader in self._starting + self._ready + self._new:
            reader.flag.value = 1

    def send(self, folders: list[Folder], kinds: tuple[str, ...]) -> int | None:
        """Hand ``folders`` (path, identity, names) to the least busy ready process as one parcel;
        its token, or None when all are full."""
        self._take_new()
        free = [r for r in self._ready if len(r.tokens) < IN_FLIGHT]
        if not free:
            return None
        reader = min(free, key=lambda r: len(r.tokens))
        self._token += 1
        try:
            reader.conn.send((self._token, folders, kinds))
        except OSError:
            return None  # dead: seen by ``collect``
        reader.tokens.append((self._token, len(folders)))
        return self._token

    def collect(self, timeout: float) -> list[tuple[int, Answer]]:
        """Answers received within ``timeout`` seconds (0: only those waiting); ``None`` for each
        batch of a process that died (a SIGBUS from a mapped file's I/O error, or killed): the
        scanning thread reads those batches itself, with ``read``."""
        self._take_new()
        answers: list[tuple[int, Answer]] = []
        for fd, _ in self._poller.poll(timeout * 1000):
            reader = self._by_fd[fd]
            try:
                message = reader.conn.recv()
            except (EOFError, OSError):
                answers += self._dead(reader)
                continue
            if message == _READY:
                self._starting.remove(reader)
                self._ready.append(reader)
                continue
            token, outcomes = message
            if not reader.tokens or reader.tokens[0][0] != token:
                answers += self._dead(reader)  # out of order: never trusted
                continue
            reader.tokens.pop(0)
            answers.append((token, outcomes))
        return answers

    def held(self) -> set[int]:
        """Tokens of batches a live process still owes an answer for."""
        return {token for reader in self._starting + self._ready for token, _ in reader.tokens}

    def _dead(self, reader: _Reader) -> list[tuple[int, Answer]]:
        self._poller.unregister(reader.conn.fileno())
        del self._by_fd[reader.conn.fileno()]
        for group in (self._starting, self._ready):
            if reader in group:
                group.remove(reader)
        self.deaths.append(self._end(reader))
        answers: list[tuple[int, Answer]] = [(token, None) for token, _ in reader.tokens]
        reader.tokens.clear()
        return answers

    @staticmethod
    def _end(reader: _Reader) -> int | None:
        reader.flag.value = 1  # a batch still being read: not read further
        reader.conn.close()  # the process exits when its pipe closes
        reader.process.join(5.0)
        if reader.process.exitcode is None:
            reader.process.kill()
            reader.process.join()
        exitcode: int | None = reader.process.exitcode
        reader.process.close()  # its sentinel
        return exitcode

    def close(self) -> None:
        """Processes with nothing pending wait idle for the next scan (up to ``MAX_IDLE``); the
        others end (``close_idle`` ends the idle ones)."""
        if self._starter is not None:
            self._starter.join()  # (a start already made ends quickly)
        with self._lock:
            leftover, self._new = self._new, []
        for reader in self._ready:
            with _idle_lock:
                if not reader.tokens and len(_idle) < MAX_IDLE:
                    _idle.append(reader)
                    continue
            self._end(reader)
        for reader in self._starting + leftover:
            self._end(reader)
        self._starting.clear()
        self._ready.clear()


def close_idle() -> None:
    """End the processes kept for the next scan."""
    with _idle_lock:
        idle, _idle[:] = _idle[:], []
    for reader in idle:
        ReaderPool._end(reader)
