"""Which reader an input needs, from a ``FORMAT:`` prefix on the command line or its first bytes.

Example::

    >>> parse_input_spec("vics:/data/case.json")
    ('vics', '/data/case.json')
    >>> parse_input_spec("/data/a:b.txt")
    (None, '/data/a:b.txt')
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator

from filters.errors import ImportFailed, UsageError
from filters.importers import FORMATS, ImportOptions, ImportReport, Item
from filters.importers.common import UTF8_BOM, open_binary, os_reason
from filters.importers.folder import read_folder
from filters.importers.hashdeep import HEADER as HASHDEEP_HEADER
from filters.importers.hashdeep import read_hashdeep
from filters.importers.hashlist import read_hash_list
from filters.importers.icse import read_icse
from filters.importers.vics import read_vics

Reader = Callable[[str, ImportOptions, ImportReport], Iterator[Item]]
READERS: dict[str, Reader] = {
    "folder": read_folder,
    "list": read_hash_list,
    "vics": read_vics,
    "icse": read_icse,
    "hashdeep": read_hashdeep,
}
SNIFF_BYTES = 8 * 1024
VICS_ROOT_KEYS = (b'"@odata.context"', b'"odata.metadata"', b'"value"')
# md5, sha1, and the 64 hex digits of sha256, blake3 and sample digests.
_LIST_LINE = re.compile(rb"\s*(?:[0-9A-Fa-f]{32}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})\s*")


def parse_input_spec(spec: str) -> tuple[str | None, str]:
    """(format or None, path) of a command-line input; only a name in FORMATS counts as a prefix."""
    prefix, colon, rest = spec.partition(":")
    if not colon or prefix not in FORMATS:
        return None, spec
    if not rest:
        raise UsageError(spec, f"no path after {prefix}:")
    return prefix, rest


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of the input at ``path``, from its type and first few KiB."""
    source = os.fspath(path)
    try:
        mode = os.stat(source).st_mode
    except OSError as err:
        raise ImportFailed(source, os_reason(err)) from err
    if stat.S_ISDIR(mode):
        return "folder"
    if not stat.S_ISREG(mode):
        # Sniffing would consume the start of a pipe that the reader could not read again.
        raise ImportFailed(
            source, f"cannot tell the format of a pipe or device (give --format {'|'.join(FORMATS)})"
        )
    with open_binary(source) as stream:
        try:
            head = stream.read(SNIFF_BYTES)
        except OSError as err:
            raise ImportFailed(source, os_reason(err)) from err
    fmt = _sniff(head.removeprefix(UTF8_BOM), complete=len(head) < SNIFF_BYTES)
    if fmt is None:
        raise ImportFailed(source, f"cannot tell the format (give --format {'|'.join(FORMATS)})")
    return fmt


def _sniff(head: bytes, complete: bool) -> str | None:
    if head.lstrip().startswith(b"{"):
        return "vics" if any(key in head for key in VICS_ROOT_KEYS) else None
    lines = head.splitlines()
    if not complete and lines:
        lines.pop()  # probably cut short by the sniff size
    first = lines[0].strip() if lines else b""
    if first.startswith(HASHDEEP_HEADER):
        return "hashdeep"
    if first.lower().startswith(b"md5;sha1"):
        return "icse"
    content = [line for line in lines if line.strip() and not line.lstrip().startswith(b"#")]
    if content and all(_LIST_LINE.fullmatch(line) for line in content):
        return "list"
    return None


def read_input(
    path: str | os.PathLike[str], fmt: str | None, options: ImportOptions, report: ImportReport
) -> Iterator[Item]:
    """The entries (and batches) of one input, read with the reader of ``fmt`` (None: detect it).

    Checks now that the input exists and what it is; the entries come as the iterator is consumed.
    ``options.strict`` makes ``report`` strict, so the first bad record raises ImportFailed.
    """
    source = os.fspath(path)
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(fmt, f"unknown input format (known: {', '.join(FORMATS)})")
    try:
        os.stat(source)
    except OSError as err:
        raise ImportFailed(source, os_reason(err)) from err
    if options.strict:
        report.strict = True
    return READERS[fmt or detect_format(source)](source, options, report)
