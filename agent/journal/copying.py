"""Atomic, durable file copies: a reader (or a power cut) sees the old file or the whole new one.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a").write_bytes(b"abcdef")
    >>> copy_atomically(folder / "a", folder / "sub" / "b", limit=4), (folder / "sub" / "b").read_bytes()
    (4, b'abcd')
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from filters.errors import JournalError

CHUNK = 1 << 20


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a new or renamed file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_regular(source: Path) -> BinaryIO:
    """``source`` opened for reading without blocking on it (a FIFO on a stick is refused)."""
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def copy_atomically(source: Path, destination: Path, limit: int | None = None) -> int:
    """Copy (at most ``limit`` bytes of) ``source``; returns the bytes copied."""
    temporary = destination.with_name(f".{destination.name}.tmp")
    copied = 0
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with _open_regular(source) as reader, temporary.open("wb") as writer:
            while limit is None or copied < limit:
                chunk = reader.read(CHUNK if limit is None else min(CHUNK, limit - copied))
                if not chunk:
                    break
                writer.write(chunk)
                copied += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        temporary.replace(destination)
        fsync_folder(destination.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise JournalError(destination, f"cannot copy {source.name}: {err.strerror}") from err
    return copied
