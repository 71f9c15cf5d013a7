"""Digest kinds, the sample digest, and computing several digests of one file in one read.

The sample digest tests a file while reading at most 12 KiB of it, whatever its size (definition in
docs/filter-format.md): BLAKE3 over a domain tag, the size as 8 little-endian bytes, and either the
whole file (up to 12 KiB) or three 4 KiB blocks, each aligned to a 4 KiB boundary of the file: the
first, the one holding the middle, and the last whole one. Aligned blocks are what file systems
store, so each sample costs one block read from the medium.

Example::

    >>> sample_digest_of_bytes(b"abc").hex()[:16]
    '864c3c20c8b4b5f0'
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from typing import Protocol

import blake3

SAMPLE_KIND = "sample"
WHOLE_FILE_KINDS = ("md5", "sha1", "sha256", "blake3")
DIGEST_KINDS = (*WHOLE_FILE_KINDS, SAMPLE_KIND)  # the kinds of a file's digests
BLOCK_KIND = "block"  # a set of 4 KiB blocks of known files (filters/blocks.py), not of whole files
SET_KINDS = (*DIGEST_KINDS, BLOCK_KIND)  # the kinds a filter's sets can have
DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "blake3": 32, SAMPLE_KIND: 32}
KIND_BY_SIZE = {16: "md5", 20: "sha1"}  # 32-byte digests are ambiguous: sha256 or blake3

SAMPLE_CHUNK = 4 * 1024
SAMPLE_WHOLE_LIMIT = 3 * SAMPLE_CHUNK
SAMPLE_DOMAIN = b"fieldtriage sample v2\x00"
READ_BLOCK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


def _blake3() -> Hasher:
    return blake3.blake3()


HASHER_FACTORIES: dict[str, Callable[[], Hasher]] = {
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": hashlib.sha256,
    "blake3": _blake3,
}


def sample_offsets(size: int) -> tuple[int, ...]:
    """Where the three samples of a file of ``size`` bytes start (empty when it is read whole)."""
    if size <= SAMPLE_WHOLE_LIMIT:
        return ()
    return (0, size // (2 * SAMPLE_CHUNK) * SAMPLE_CHUNK, (size // SAMPLE_CHUNK - 1) * SAMPLE_CHUNK)


def sample_digest_from_parts(size: int, parts: Iterable[bytes | bytearray | memoryview]) -> bytes:
    """The sample digest given the file size and its sampled bytes (or whole content) in order."""
    hasher = blake3.blake3(SAMPLE_DOMAIN)
    hasher.update(size.to_bytes(8, "little"))
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def sample_digest_of_bytes(data: bytes) -> bytes:
    size = len(data)
    offsets = sample_offsets(size)
    if not offsets:
        return sample_digest_from_parts(size, [data])
    return sample_digest_from_parts(size, [data[o : o + SAMPLE_CHUNK] for o in offsets])


def normalise_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Kinds in canonical order, each once; ValueError names an unknown one."""
    wanted = set(kinds)
    unknown = wanted - set(DIGEST_KINDS)
    if unknown:
        raise ValueError(f"unknown digest kind {sorted(unknown)[0]!r} (known: {', '.join(DIGEST_KINDS)})")
    return tuple(k for k in DIGEST_KINDS if k in wanted)


def digest_fd(fd: int, size: int, kinds: Iterable[str]) -> dict[str, bytes]:
    """Digests of an open regular file of ``size`` bytes, reading it once.

    With only ``sample`` asked for, at most 12 KiB is read (three preads). With a whole-file kind,
    the file is streamed once and the samples are cut from the stream. Raises OSError on read
    errors and ``FileChangedError`` when the file is not ``size`` bytes long any more.
    """
    wanted = normalise_kinds(kinds)
    whole = [k for k in wanted if k != SAMPLE_KIND]
    want_sample = SAMPLE_KIND in wanted
    if not whole:
        return {SAMPLE_KIND: _sample_by_pread(fd, size)} if want_sample else {}

    hashers = [HASHER_FACTORIES[k]() for k in whole]
    sample = _SampleCollector(size) if want_sample else None
    done = 0
    buffer = bytearray(min(READ_BLOCK, max(size, 1)))
    view = memoryview(buffer)
    while True:
        n = os.readv(fd, [view])
        if n == 0:
            break
        chunk = view[:n]
        for hasher in hashers:
            hasher.update(chunk)
        if sample is not None:
            sample.feed(done, chunk)
        done += n
        if done > size:
            raise FileChangedError(f"file grew while read (expected {size} bytes)")
    if done != size:
        raise FileChangedError(f"file changed size while read ({done} of {size} bytes)")
    result = {k: h.digest() for k, h in zip(whole, hashers, strict=True)}
    if sample is not None:
        result[SAMPLE_KIND] = sample.digest()
    return {k: result[k] for k in wanted}


def digest_path(path: str | os.PathLike[str], kinds: Iterable[str]) -> dict[str, bytes]:
    """``digest_fd`` on a regular file (no symlink at the last component; a FIFO or device is
    refused with OSError before it can block or be read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return digest_fd(fd, info.st_size, kinds)
    finally:
        os.close(fd)


def digest_by_reads(
    size: int, kinds: Iterable[str], read_at: Callable[[int, int], bytes], chunk: int = READ_BLOCK
) -> tuple[dict[str, bytes], int]:
    """Digests of a file of ``size`` bytes that is read through ``read_at(offset, length)`` (a
    phone's partial reads): with only ``sample``, its three 4 KiB samples (or all of it up to 12
    KiB); with a whole-file kind, the whole file once, the samples cut from the stream. Returns the
    digests and the bytes read. The last read runs from the last sample to one byte past the
    reported size (at most 8 KiB), so that a file shorter or longer than it says is caught without
    another call; ``FileChangedError`` when the bytes do not match ``size``."""
    wanted = normalise_kinds(kinds)
    whole = [k for k in wanted if k != SAMPLE_KIND]
    if not whole:
        if SAMPLE_KIND not in wanted:
            return {}, 0
        offsets = sample_offsets(size)
        ranges = [(o, SAMPLE_CHUNK) for o in offsets] or [(0, size)]
        parts = [read_at(offset, length) for offset, length in ranges[:-1]]
        last_offset, last_length = ranges[-1]
        tail = read_at(last_offset, size - last_offset + 1)  # to the reported end, and one byte past
        if any(len(part) != SAMPLE_CHUNK for part in parts) or len(tail) < size - last_offset:
            raise FileChangedError(f"shorter than its reported size ({size} bytes)")
        if len(tail) > size - last_offset:
            raise FileChangedError(f"longer than its reported size ({size} bytes)")
        parts.append(tail[:last_length])
        return {SAMPLE_KIND: sample_digest_from_parts(size, parts)}, sum(map(len, parts[:-1])) + len(tail)
    hashers = [HASHER_FACTORIES[k]() for k in whole]
    sample = _SampleCollector(size) if SAMPLE_KIND in wanted else None
    done = 0
    while done <= size:
        length = min(chunk, size - done) + (1 if size - done <= chunk else 0)
        data = read_at(done, length)
        if not data:
            break
        if done + len(data) > size:
            raise FileChangedError(f"longer than its reported size ({size} bytes)")
        view = memoryview(data)
        for hasher in hashers:
            hasher.update(view)
        if sample is not None:
            sample.feed(done, view)
        done += len(data)
        if done == size:
            break
    if done != size:
        raise FileChangedError(f"shorter than its reported size ({done} of {size} bytes)")
    result = {k: h.digest() for k, h in zip(whole, hashers, strict=True)}
    if sample is not None:
        result[SAMPLE_KIND] = sample.digest()
    return {k: result[k] for k in wanted}, done


class FileChangedError(OSError):
    """The file was not the size it had when it was opened."""


def _sample_by_pread(fd: int, size: int) -> bytes:
    offsets = sample_offsets(size)
    if not offsets:
        data = os.pread(fd, size + 1, 0)
        if len(data) != size:
            raise FileChangedError(f"file changed size while read ({len(data)} of {size} bytes)")
        return sample_digest_from_parts(size, [data])
    parts = []
    for offset in offsets:
        part = os.pread(fd, SAMPLE_CHUNK, offset)
        if len(part) != SAMPLE_CHUNK:
            raise FileChangedError(f"file shrank while read (expected {size} bytes)")
        parts.append(part)
    return sample_digest_from_parts(size, parts)


class _SampleCollector:
    """Cuts the sampled ranges out of a sequential stream of a file."""

    def __init__(self, size: int) -> None:
        self.size = size
        offsets = sample_offsets(size)
        self.ranges = [(o, o + SAMPLE_CHUNK) for o in offsets] or [(0, size)]
        self.parts = [bytearray() for _ in self.ranges]

    def feed(self, position: int, chunk: memoryview) -> None:
        end = position + len(chunk)
        for (start, stop), part in zip(self.ranges, self.parts, strict=True):
            lo, hi = max(start, position), min(stop, end)
            if lo < hi:
                part += chunk[lo - position : hi - position]

    def digest(self) -> bytes:
        return sample_digest_from_parts(self.size, self.parts)
