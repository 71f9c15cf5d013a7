"""Reading a small configured file (the configuration, a key file) without ever blocking on it.

``open()`` on a FIFO waits for a writer, on a terminal or a serial line it can wait for a carrier,
and ``read()`` of ``/dev/zero`` never ends. ``read_regular_file`` looks first (``stat``, so nothing
is opened that is not a regular file), opens with ``O_NONBLOCK | O_NOCTTY | O_CLOEXEC``, checks
again on the open descriptor (``fstat``: the path may have been replaced in between) and reads at
most ``limit`` bytes. Every refusal is the caller's error class, one line naming the file.

Example::

    >>> import tempfile, pathlib
    >>> from filters.errors import KeyFileError
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a.pub").write_bytes(b"key")
    3
    >>> read_regular_file(folder / "a.pub", 64, KeyFileError, "a key file")
    b'key'
    >>> os.mkfifo(folder / "b.pub")
    >>> try:
    ...     read_regular_file(folder / "b.pub", 64, KeyFileError, "a key file")
    ... except KeyFileError as err:
    ...     print(err.reason)
    not a regular file (FIFO)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from filters.errors import FieldtriageError

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``file_kind(stat.S_IFIFO)`` is ``'FIFO'``.

    >>> file_kind(stat.S_IFDIR | 0o755), file_kind(stat.S_IFCHR)
    ('folder', 'character device')
    """
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "file of an unknown kind"


def read_regular_file(
    path: str | os.PathLike[str],
    limit: int,
    error: type[FieldtriageError],
    what: str,
    *,
    follow_symlinks: bool = True,
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; ``error(path, reason)``
    when it cannot be read, is not a regular file or is larger (``what`` names it: "a key file").
    ``follow_symlinks=False`` refuses a symbolic link as well (a journal's own segment files)."""
    path = Path(path)
    if "\0" in str(path):
        raise error(path, "contains a NUL byte")
    try:
        before = os.stat(path, follow_symlinks=follow_symlinks)
        if not stat.S_ISREG(before.st_mode):
            raise error(path, f"not a regular file ({file_kind(before.st_mode)})")
        fd = os.open(path, OPEN_FLAGS | (0 if follow_symlinks else os.O_NOFOLLOW))
    except OSError as err:
        raise error(path, f"cannot read: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(path, f"not a regular file ({file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise error(path, f"too large for {what} ({st.st_size} bytes, at most {limit})")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            # the size fstat gave, plus one byte to see the end (os.read reserves what it is asked)
            chunk = os.read(fd, min(limit + 1 - size, max(st.st_size + 1 - size, 64 * 1024)))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise error(path, f"cannot read: {err.strerror}") from err
    finally:
        os.close(fd)
    if size > limit:
        raise error(path, f"too large for {what} (more than {limit} bytes)")
    return b"".join(chunks)
