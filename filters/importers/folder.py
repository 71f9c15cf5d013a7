"""The ``folder`` input: digests computed from every regular file under a directory.

The tree is walked without recursion, in a fixed order (names sorted by their bytes, depth first),
and never through a symbolic link: links, FIFOs, sockets and devices are left out, and so are
zero-length files. A folder holding no regular file at all (empty, or only subfolders, links and
special files) stops the build with an error naming the folder. Each file is read once for all the
kinds in ``ImportOptions.digests``; every digest becomes an entry with ``from_content=True``. With
the kind ``block`` among them, the same read also cuts the file into 4 KiB blocks, which become one
``BlockItem`` per file with a whole block (``filters/blocks.py``). A
directory given as the input itself may be a symbolic link (the user named it); nothing inside it is
followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from filters.blocks import digest_fd_with_blocks
from filters.digests import BLOCK_KIND, digest_fd, normalise_kinds
from filters.errors import ImportFailed, printable
from filters.importers import BlockItem, DigestEntry, ImportOptions, ImportReport
from filters.importers.common import ZERO_LENGTH, admit, os_reason

_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW
    # A FIFO swapped in after the directory was listed must not block the open.
    | os.O_NONBLOCK
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class _NotRegular(Exception):
    """The path was not a regular file any more when it was opened."""


def read_folder(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestEntry | BlockItem]:
    """The entries of every regular file under ``path``; unreadable files are bad records ``file P``."""
    source = os.fspath(path)
    blocks = BLOCK_KIND in options.digests
    try:
        kinds = normalise_kinds(k for k in options.digests if k != BLOCK_KIND)
    except ValueError as err:
        raise ImportFailed(source, str(err)) from err
    if not kinds and not blocks:
        raise ImportFailed(source, "no digest kinds asked for")
    if blocks:
        kinds = (*kinds, BLOCK_KIND)
    try:
        top = _sorted_entries(source)
    except OSError as err:
        raise ImportFailed(source, os_reason(err)) from err

    # One iterator per open directory level, with the path of that directory relative to the input.
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", iter(top))]
    files = 0
    while stack:
        prefix, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        relative = prefix + entry.name
        file_type = _file_type(entry)
        if file_type == "directory":
            try:
                stack.append((relative + "/", iter(_sorted_entries(entry.path))))
            except OSError as err:
                report.bad(source, f"directory {printable(relative)}", os_reason(err))
        elif file_type != "regular":
            report.leave_out(file_type)
        else:
            files += 1
            yield from _file_entries(entry.path, relative, kinds, source, options, report)
    if not files:
        what = "the folder is empty" if not top else "only subfolders, links or special files"
        raise ImportFailed(source, f"holds no file ({what}): nothing to build a filter from")


def _file_entries(
    path: str,
    relative: str,
    kinds: tuple[str, ...],
    source: str,
    options: ImportOptions,
    report: ImportReport,
) -> Iterator[DigestEntry | BlockItem]:
    try:
        read = _digest_regular_file(path, kinds)
    except _NotRegular:
        report.leave_out("not a regular file")
        return
    except OSError as err:
        report.bad(source, f"file {printable(relative)}", os_reason(err))
        return
    if read is None:
        report.leave_out(ZERO_LENGTH)
        return
    digests, item = read
    for kind in kinds:
        if kind == BLOCK_KIND:
            continue
        entry = DigestEntry(kind, digests[kind], options.category, options.priority, from_content=True)
        if admit(report, source, entry):
            yield entry
    if item is not None and item.digests:
        item = BlockItem(
            options.category, options.priority, item.digests, item.patterns, item.identity, relative
        )
        report.accept_blocks(source, item)
        yield item


def _digest_regular_file(
    path: str, kinds: tuple[str, ...]
) -> tuple[dict[str, bytes], BlockItem | None] | None:
    """The digests of the file at ``path`` and, with ``block`` among ``kinds``, its blocks (one
    read), or None if it is empty."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegular
        if info.st_size == 0:
            return None
        if BLOCK_KIND not in kinds:
            return digest_fd(fd, info.st_size, kinds), None
        digests, cutter = digest_fd_with_blocks(fd, info.st_size, kinds)
        return digests, cutter.item(info.st_size, "", "other")
    finally:
        os.close(fd)


def _sorted_entries(directory: str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as listing:
        return sorted(listing, key=lambda entry: os.fsencode(entry.name))


def _file_type(entry: os.DirEntry[str]) -> str:
    """ "directory", "regular", or the reason another kind of entry is left out (never following links)."""
    try:
        if entry.is_symlink():
            return "symbolic link"
        if entry.is_dir(follow_symlinks=False):
            return "directory"
        if entry.is_file(follow_symlinks=False):
            return "regular"
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return "regular"  # vanished or unreadable: opening it reports why, as a bad record
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        return "device file"
    return "not a regular file"
