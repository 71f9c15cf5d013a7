"""Opening one file safely and computing exactly the digests asked for, in one read.

``open_regular`` opens a name inside an open directory without following a symlink, without
blocking on a FIFO and without updating its access time, then checks with ``fstat`` that it got a
regular file. ``read_digests`` computes several digests of an open file in one pass; it gives the
same digests as ``filters.digests.digest_fd`` (the tests check both against the coreutils and b3sum)
with less Python work per file: a file up to 1 MiB is read with one ``read`` call of ``size + 1``
bytes and hashed from that buffer with one-shot hash calls, a larger one is streamed in 1 MiB blocks
while a reader thread fetches the next (``read_ahead``; BLAKE3 hashes each block on all CPUs), and
only-``sample`` reads at most 12 KiB (three aligned 4 KiB blocks) with ``pread``. Callers re-check
the size with ``fstat`` after reading (the engine does), which also catches a file that grew just
after its one ``read``.

Example::

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a"), "wb") as f:
    ...     _ = f.write(b"abc")
    >>> dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    >>> fd, size = open_regular(dir_fd, b"a")
    >>> read_digests(fd, size, ("md5",)).digests["md5"].hex()
    '900150983cd24fb0d6963f7d28e17f72'
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import NamedTuple, Protocol

import blake3

from agent.scan import read_ahead
from filters.digests import (
    HASHER_FACTORIES,
    SAMPLE_CHUNK,
    SAMPLE_KIND,
    FileChangedError,
    Hasher,
    sample_digest_from_parts,
    sample_digest_of_bytes,
    sample_offsets,
)

SMALL_FILE = 1 << 20
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
NOATIME = getattr(os, "O_NOATIME", 0)


class CancelFlag(Protocol):
    """What a read checks between blocks (a ``threading.Event``, or a flag shared with a process)."""

    def is_set(self) -> bool: ...


class NotRegularFile(OSError):
    """The name turned out not to be a regular file when opened (it changed since it was listed)."""


class ReadCancelled(Exception):
    """The scan was stopped while this file was being read."""


class DigestResult(NamedTuple):
    digests: dict[str, bytes]
    bytes_read: int


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


# One call per digest of a buffer (the same digests as ``HASHER_FACTORIES``; tests compare them).
ONE_SHOT: dict[str, Callable[[bytes], bytes]] = {
    "md5": _md5,
    "sha1": _sha1,
    "sha256": _sha256,
    "blake3": _blake3,
}


def buffer_digester(kinds: Sequence[str]) -> Callable[[bytes], dict[str, bytes]]:
    """A function giving the digests of ``kinds`` of a whole file's bytes (as ``read_digests`` of a
    small file): one call per file, without a dict comprehension for a single kind."""
    whole = [(k, ONE_SHOT[k]) for k in kinds if k != SAMPLE_KIND]
    want_sample = SAMPLE_KIND in kinds
    if len(whole) == 1 and not want_sample:
        kind, one_shot = whole[0]

        def one(data: bytes) -> dict[str, bytes]:
            return {kind: one_shot(data)}

        return one

    def several(data: bytes) -> dict[str, bytes]:
        found = {k: f(data) for k, f in whole}
        if want_sample:
            found[SAMPLE_KIND] = sample_digest_of_bytes(data)
        return found

    return several


def open_no_follow(dir_fd: int, name: bytes) -> int:
    """Open ``name`` in ``dir_fd`` read-only: never through a symlink (ELOOP), never blocking on a
    FIFO, without updating its access time where allowed (O_NOATIME is refused with EPERM on files
    of other owners without CAP_FOWNER: retried without it)."""
    try:
        return os.open(name, OPEN_FLAGS | NOATIME, dir_fd=dir_fd)
    except PermissionError as err:
        if not NOATIME or err.errno != errno.EPERM:
            raise
        return os.open(name, OPEN_FLAGS, dir_fd=dir_fd)


def open_regular(dir_fd: int, name: bytes) -> tuple[int, int]:
    """Open ``name`` in ``dir_fd`` for reading (``open_no_follow``); returns (fd, size). Raises
    ``NotRegularFile`` (and closes) when ``fstat`` shows anything but a regular file."""
    fd = open_no_follow(dir_fd, name)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file when opened (mode {info.st_mode:o})")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_digests(fd: int, size: int, kinds: Sequence[str], cancel: CancelFlag | None = None) -> DigestResult:
    """The digests of ``kinds`` of the open file ``fd`` of ``size`` bytes, in one read.

    Raises ``FileChangedError`` when the file turns out not to be ``size`` bytes long, OSError on
    read errors and ``ReadCancelled`` when ``cancel`` is set while a large file is streamed.
    """
    whole = [k for k in kinds if k != SAMPLE_KIND]
    want_sample = SAMPLE_KIND in kinds
    if not whole:
        return _sample_only(fd, size) if want_sample else DigestResult({}, 0)
    if size <= SMALL_FILE:
        data = os.read(fd, size + 1)
        if len(data) != size:
            data = read_rest(fd, size, data)
        found = {k: ONE_SHOT[k](data) for k in whole}
        if want_sample:
            found[SAMPLE_KIND] = sample_digest_of_bytes(data)
        return DigestResult(found, size)
    return _stream(fd, size, whole, want_sample, cancel)


def read_rest(fd: int, size: int, data: bytes) -> bytes:
    """After a first ``read`` of ``size + 1`` bytes gave ``data``, not ``size`` bytes: more bytes
    (the file grew: error), or a short read (read on until ``size + 1`` bytes or the end)."""
    if len(data) > size:
        raise FileChangedError(errno.EIO, f"file grew while read (expected {size} bytes)")
    parts = [data]
    total = len(data)
    while 0 < total <= size:
        more = os.read(fd, size + 1 - total)
        if not more:
            break
        parts.append(more)
        total += len(more)
    if total != size:
        raise FileChangedError(errno.EIO, f"file changed size while read ({total} of {size} bytes)")
    return b"".join(parts)


def _sample_only(fd: int, size: int) -> DigestResult:
    offsets = sample_offsets(size)
    if offsets:
        _no_readahead(fd)
    if not offsets:
        data = os.pread(fd, size + 1, 0)
        if len(data) != size:
            raise FileChangedError(errno.EIO, f"file changed size while read ({len(data)} of {size} bytes)")
        return DigestResult({SAMPLE_KIND: sample_digest_from_parts(size, [data])}, len(data))
    parts = []
    for offset in offsets:
        part = os.pread(fd, SAMPLE_CHUNK, offset)
        if len(part) != SAMPLE_CHUNK:
            raise FileChangedError(errno.EIO, f"file shrank while read (expected {size} bytes)")
        parts.append(part)
    return DigestResult({SAMPLE_KIND: sample_digest_from_parts(size, parts)}, len(offsets) * SAMPLE_CHUNK)


def _no_readahead(fd: int) -> None:
    """Three 4 KiB preads would each pull a readahead window (128 KiB or more) from the device."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    except (OSError, AttributeError):
        pass  # only a hint


def stream_hasher(kind: str) -> Hasher:
    """BLAKE3 hashes a 1 MiB block on several threads (``b3sum`` does too); others on one."""
    if kind == "blake3":
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    return HASHER_FACTORIES[kind]()


def _stream(
    fd: int, size: int, whole: list[str], want_sample: bool, cancel: CancelFlag | None
) -> DigestResult:
    """A large file through the hashers while a reader thread fetches the next block."""
    hashers = [stream_hasher(k) for k in whole]
    updates = [h.update for h in hashers]
    ranges = [(o, o + SAMPLE_CHUNK) for o in sample_offsets(size)] if want_sample else []
    parts = [bytearray() for _ in ranges]
    done = 0
    with read_ahead.borrowed() as ahead, closing(ahead.blocks(fd, size)) as blocks:
        for chunk in blocks:
            if cancel is not None and cancel.is_set():
                raise ReadCancelled
            n = len(chunk)
            for update in updates:
                update(chunk)
            for (start, stop), part in zip(ranges, parts, strict=True):
                lo, hi = max(start, done), min(stop, done + n)
                if lo < hi:
                    part += chunk[lo - done : hi - done]
            done += n
            if done > size:
                raise FileChangedError(errno.EIO, f"file grew while read (expected {size} bytes)")
    if done != size:
        raise FileChangedError(errno.EIO, f"file changed size while read ({done} of {size} bytes)")
    found = {k: h.digest() for k, h in zip(whole, hashers, strict=True)}
    if want_sample:
        found[SAMPLE_KIND] = sample_digest_from_parts(size, parts)
    return DigestResult(found, done)
