"""The ``hashdeep`` input: the output of ``hashdeep`` (also used as its audit file).

The file starts with ``%%%% HASHDEEP-1.0``; the next ``%%%%`` line names the columns, for example
``%%%% size,md5,sha256,filename`` (any of size, md5, sha1, sha256, tiger, whirlpool, filename).
``##`` lines are comments. Data lines are comma separated; the file name is the last column and may
itself contain commas. The md5, sha1 and sha256 columns become entries with the category and priority
of the options; a size of 0 is left out. A line that does not fit the columns is a bad record.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.common import ZERO_LENGTH, admit, numbered_lines, open_binary, parse_hex_digest

HEADER = b"%%%% HASHDEEP-1.0"
DIGEST_COLUMNS = ("md5", "sha1", "sha256")


class _Columns:
    """The layout the ``%%%%`` column line announces."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.count = len(names)
        self.filename_last = bool(names) and names[-1] == "filename"
        self.size = names.index("size") if "size" in names else None
        self.digests = [(index, name) for index, name in enumerate(names) if name in DIGEST_COLUMNS]

    def split(self, line: bytes) -> list[bytes]:
        if self.filename_last:
            return line.split(b",", self.count - 1)
        return line.split(b",")


def read_hashdeep(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestEntry]:
    """The entries of a hashdeep file."""
    source = os.fspath(path)
    with open_binary(source) as stream:
        lines = numbered_lines(stream, source, report)
        first = next(lines, None)
        if first is None or first[1].rstrip() != HEADER:
            raise ImportFailed(source, "line 1: no %%%% HASHDEEP-1.0 header: not a hashdeep file")
        columns: _Columns | None = None
        for number, line in lines:
            if line.startswith(b"%%%%"):
                # A second header starts a concatenated file whose column line follows.
                columns = None if line.rstrip() == HEADER else _parse_columns(line, number, source)
                continue
            if line.startswith(b"##") or not line.strip():
                continue
            if columns is None:
                raise ImportFailed(source, f"line {number}: data before the %%%% column line")
            try:
                digests = _line_digests(line, columns)
            except ValueError as err:
                report.bad(source, f"line {number}", str(err))
                continue
            if digests is None:
                report.leave_out(ZERO_LENGTH)
                continue
            for kind, digest in digests:
                entry = DigestEntry(kind, digest, options.category, options.priority)
                if admit(report, source, entry):
                    yield entry


def _parse_columns(line: bytes, number: int, source: str) -> _Columns:
    names = [name.strip().lower() for name in line[4:].decode("ascii", "replace").split(",")]
    columns = _Columns(names)
    if not columns.digests:
        raise ImportFailed(source, f"line {number}: the column line has no md5, sha1 or sha256 column")
    return columns


def _line_digests(line: bytes, columns: _Columns) -> list[tuple[str, bytes]] | None:
    """The digests of a data line, or None when its size column says the file is empty."""
    fields = columns.split(line)
    if len(fields) != columns.count:
        raise ValueError(f"{len(fields)} fields, the column line has {columns.count}")
    if columns.size is not None:
        size = fields[columns.size].strip()
        if not (size.isascii() and size.isdigit()):
            raise ValueError(f"size is not a number: {size.decode('ascii', 'backslashreplace')!r}")
        if int(size) == 0:
            return None
    digests = []
    for index, kind in columns.digests:
        try:
            digests.append((kind, parse_hex_digest(fields[index], kind)))
        except ValueError as err:
            raise ValueError(f"{kind} column: {err}") from err
    return digests
