"""The walk: finds every regular file under the roots, most likely material first, and hands them
out in batches while it goes on walking (the first batch leaves after one directory listing).

Safe on hostile trees:

* iterative (a heap, no recursion), and every directory is opened relative to its parent's open
  descriptor (``openat``), so depth and PATH_MAX do not matter and no path is resolved twice;
* never follows a symlink (``O_NOFOLLOW``; symlinks are skipped and counted), never opens anything
  but a directory or a regular file (FIFOs, sockets and devices are skipped by their type, never
  opened). Types come from the listing (``d_type``, no system call; ``lstat`` only where the file
  system leaves it unknown), so a file costs no ``lstat``: its size is taken by the worker from the
  ``fstat`` it makes when it opens the file (which also re-checks the type);
* a directory already visited (same ``st_dev``/``st_ino``: bind mounts, loops) is skipped;
* errors (permission, vanished entries, I/O errors while listing) are recorded and the walk goes on;
* named data streams (NTFS alternate data streams, which hold whole files) are files too: where the
  filesystem lists them (ntfs-3g's ``ntfs.streams.list`` attribute, asked once per folder; other
  filesystems refuse the name at once), every stream of an entry is walked as ``name:stream`` and a
  root folder's own streams as ``:stream``, which ntfs-3g (``streams_interface=windows``) opens.

A directory's descriptor stays open while batches of its files are pending (reference counted;
workers call ``release``), so workers open files with ``openat`` too. Order: see ``order``.
"""

from __future__ import annotations

import errno
import heapq
import os
import stat
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agent.scan.order import NORMAL, directory_class, directory_rank, file_rank, split_media
from agent.scan.report import Problem

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
BATCH_FILES = 64  # files per batch when the walking thread reads them itself (one worker)
# Files per batch handed to worker threads: sizes are not known before a file is opened, so batches
# are kept small for several workers to share large files evenly.
SHARED_BATCH_FILES = 8
FS_ENCODING, FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()

STREAMS_ATTRIBUTE = "ntfs.streams.list"
NO_STREAMS = {errno.ENODATA, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}

SKIP_CODES = {
    stat.S_IFIFO: ("fifo", "FIFO (named pipe): not opened"),
    stat.S_IFSOCK: ("socket", "socket: not opened"),
    stat.S_IFCHR: ("char_device", "character device: not opened"),
    stat.S_IFBLK: ("block_device", "block device: not opened"),
}


@dataclass(slots=True, eq=False)
class OpenDirectory:
    """A directory's descriptor and the prefix of its children's paths; ``refs`` pending items."""

    fd: int
    prefix: bytes
    refs: int = 0
    ident: tuple[int, int] | None = None  # (st_dev, st_ino) when the walk has it


@dataclass(slots=True)
class Batch:
    directory: OpenDirectory
    files: list[bytes]  # names in ``directory``, listed as regular files


@dataclass(slots=True)
class _PendingDirectory:
    parent: OpenDirectory | None  # None: a root, opened by its path
    name: bytes
    path: bytes
    klass: int


@dataclass(slots=True)
class _PendingFiles:
    directory: OpenDirectory
    files: list[bytes]


class WalkSink(Protocol):
    def submit(self, batch: Batch) -> None: ...
    def stopped(self) -> bool: ...


@dataclass
class WalkTally:
    """Written by the walking thread only; read by others for progress. ``files_seen``: names listed
    as regular files (their sizes are counted by the workers, from the ``fstat`` at open)."""

    directories: int = 0
    files_seen: int = 0
    done: bool = False
    errors: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)


def errno_code(err: OSError) -> str:
    return errno.errorcode.get(err.errno or 0, "OSError")


def os_reason(what: str, err: OSError) -> str:
    return f"{what}: {err.strerror or err}"


class TreeWalker:
    """Walks roots (see the module docstring); ``walk`` runs in one thread, ``release`` in any."""

    def __init__(self, sink: WalkSink, batch_files: int = BATCH_FILES) -> None:
        self.sink = sink
        self.batch_files = batch_files
        self.tally = WalkTally()
        self._heap: list[tuple[int, int, _PendingDirectory | _PendingFiles]] = []
        self._seq = 0
        self._visited: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._open: set[OpenDirectory] = set()

    def walk(self, roots: Sequence[bytes]) -> None:
        try:
            for root in reversed(roots):  # last pushed pops first: roots in the order given
                self._push_root(root)
            while self._heap and not self.sink.stopped():
                _, _, item = heapq.heappop(self._heap)
                if isinstance(item, _PendingDirectory):
                    self._visit(item)
                else:
                    self._hand_out(item)
        finally:
            for _, _, item in self._heap:
                owner = item.parent if isinstance(item, _PendingDirectory) else item.directory
                if owner is not None:
                    self.release(owner)
            self._heap.clear()
            self.tally.done = True

    def release(self, directory: OpenDirectory) -> None:
        with self._lock:
            directory.refs -= 1
            if directory.refs == 0:
                self._open.discard(directory)
                os.close(directory.fd)

    def close_all(self) -> None:
        """Close what is still open (after the workers ended, whatever happened)."""
        with self._lock:
            for directory in self._open:
                os.close(directory.fd)
            self._open.clear()

    def _push(self, rank: int, item: _PendingDirectory | _PendingFiles) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (-rank, -self._seq, item))

    def _push_root(self, root: bytes) -> None:
        try:
            info = os.lstat(root)
        except OSError as err:
            self.tally.errors.append(Problem(root, os_reason("cannot read root", err), errno_code(err)))
            return
        if stat.S_ISDIR(info.st_mode):
            self._push(directory_rank(NORMAL), _PendingDirectory(None, root, root, NORMAL))
        elif stat.S_ISREG(info.st_mode):
            head, name = os.path.split(root)
            try:
                fd = os.open(head or b".", DIR_FLAGS & ~os.O_NOFOLLOW)
            except OSError as err:
                self.tally.errors.append(Problem(root, os_reason("cannot open folder", err), errno_code(err)))
                return
            directory = self._opened(fd, root[: len(root) - len(name)])
            self._add_files(directory, [name], NORMAL)
        else:
            self._skip_by_type(root, info.st_mode)

    def _opened(self, fd: int, prefix: bytes, ident: tuple[int, int] | None = None) -> OpenDirectory:
        directory = OpenDirectory(fd, prefix, ident=ident)
        with self._lock:
            self._open.add(directory)
        return directory

    def _visit(self, item: _PendingDirectory) -> None:
        parent = item.parent
        try:
            if parent is None:
                fd = os.open(item.path, DIR_FLAGS)
            else:
                fd = os.open(item.name, DIR_FLAGS, dir_fd=parent.fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                self.tally.skipped.append(Problem(item.path, "symlink: not followed", "symlink"))
            else:
                self.tally.errors.append(
                    Problem(item.path, os_reason("cannot open folder", err), errno_code(err))
                )
            return
        finally:
            if parent is not None:
                self.release(parent)
        info = os.fstat(fd)
        ident = (info.st_dev, info.st_ino)
        if ident in self._visited:
            os.close(fd)
            reason = "folder already visited (bind mount or folder loop): not read again"
            self.tally.skipped.append(Problem(item.path, reason, "loop"))
            return
        self._visited.add(ident)
        self.tally.directories += 1
        directory = self._opened(fd, item.path if item.path.endswith(b"/") else item.path + b"/", ident)
        subdirectories, files = self._list(directory)
        files += self._named_streams(directory, subdirectories + files, parent is None)
        directory.refs += 1  # held while pushing
        for name in sorted(subdirectories, reverse=True):
            klass = directory_class(name, item.klass)
            directory.refs += 1
            self._push(
                directory_rank(klass), _PendingDirectory(directory, name, directory.prefix + name, klass)
            )
        self._add_files(directory, files, item.klass)
        self.release(directory)

    def _list(self, directory: OpenDirectory) -> tuple[list[bytes], list[bytes]]:
        """Names of the subdirectories and of the regular files, by their listed type (``d_type``:
        no system call per entry; ``DirEntry`` falls back to ``lstat`` when the type is unknown)."""
        subdirectories: list[str] = []
        files: list[str] = []
        prefix = directory.prefix
        try:
            with os.scandir(directory.fd) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            files.append(entry.name)
                        elif entry.is_dir(follow_symlinks=False):
                            subdirectories.append(entry.name)
                        elif entry.is_symlink():
                            path = prefix + os.fsencode(entry.name)
                            self.tally.skipped.append(Problem(path, "symlink: not followed", "symlink"))
                        else:
                            mode = entry.stat(follow_symlinks=False).st_mode
                            self._skip_by_type(prefix + os.fsencode(entry.name), mode)
                    except OSError as err:
                        path = prefix + os.fsencode(entry.name)
                        self.tally.errors.append(
                            Problem(path, os_reason("cannot stat", err), errno_code(err))
                        )
        except OSError as err:
            reason = os_reason(f"listing failed after {len(subdirectories) + len(files)} entries", err)
            self.tally.errors.append(Problem(prefix.rstrip(b"/") or b"/", reason, errno_code(err)))
        # os.fsencode, without a Python call per name
        return (
            [name.encode(FS_ENCODING, FS_ERRORS) for name in subdirectories],
            [name.encode(FS_ENCODING, FS_ERRORS) for name in files],
        )

    def _named_streams(self, directory: OpenDirectory, names: list[bytes], is_root: bool) -> list[bytes]:
        """``name:stream`` for every named data stream of the entries (none where the filesystem
        keeps no streams: one refused attribute read per folder)."""
        base = b"/proc/self/fd/%d" % directory.fd
        try:
            own = os.getxattr(base, STREAMS_ATTRIBUTE)
        except OSError as err:
            if err.errno not in NO_STREAMS:
                self._stream_error(directory.prefix.rstrip(b"/") or b"/", err)
            return []
        found = self._stream_names(directory, b"", own) if is_root else []
        for name in names:
            try:
                listed = os.getxattr(base + b"/" + name, STREAMS_ATTRIBUTE, follow_symlinks=False)
            except OSError as err:
                if err.errno not in NO_STREAMS:
                    self._stream_error(directory.prefix + name, err)
                continue
            found.extend(self._stream_names(directory, name, listed))
        return found

    def _stream_names(self, directory: OpenDirectory, name: bytes, listed: bytes) -> list[bytes]:
        names = []
        for stream in listed.split(b"\0"):
            if b"/" in stream:  # cannot be opened as one name: an error, never silently left out
                reason = "named stream whose name holds '/': cannot be opened"
                self.tally.errors.append(Problem(directory.prefix + name + b":" + stream, reason, "EINVAL"))
            elif stream:
                names.append(name + b":" + stream)
        return names

    def _stream_error(self, path: bytes, err: OSError) -> None:
        self.tally.errors.append(Problem(path, os_reason("cannot list named streams", err), errno_code(err)))

    def _skip_by_type(self, path: bytes, mode: int) -> None:
        code, reason = SKIP_CODES.get(stat.S_IFMT(mode), ("other", f"not a regular file (mode {mode:o})"))
        if stat.S_ISLNK(mode):
            code, reason = "symlink", "symlink: not followed"
        self.tally.skipped.append(Problem(path, reason, code))

    def _add_files(self, directory: OpenDirectory, files: list[bytes], klass: int) -> None:
        self.tally.files_seen += len(files)
        files.sort()
        for tasks in split_media(files):  # media pushed last: pops first among equal ranks
            if tasks:
                directory.refs += 1
                self._push(file_rank(tasks[0], klass), _PendingFiles(directory, tasks))

    def _hand_out(self, item: _PendingFiles) -> None:
        files, step = item.files, self.batch_files
        for start in range(0, len(files), step):
            self._submit(item.directory, files[start : start + step])
            if self.sink.stopped():
                break
        self.release(item.directory)

    def _submit(self, directory: OpenDirectory, files: list[bytes]) -> None:
        with self._lock:
            directory.refs += 1
        self.sink.submit(Batch(directory, files))
