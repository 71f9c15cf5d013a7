"""The ``list`` input: one hex digest per line.

Either case and surrounding whitespace are fine; blank lines and lines starting with ``#`` are
skipped. The kind is ``--list-kind`` when given (every line must then have its length), otherwise
it follows from the length: 32 hex digits md5, 40 sha1. 64 digits could be sha256 or blake3, so such
a line needs ``--list-kind``. Every entry gets the category and priority of the options.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from filters.digests import DIGEST_SIZES, KIND_BY_SIZE
from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.common import admit, is_hex, numbered_lines, open_binary, quote


def read_hash_list(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestEntry]:
    """The entries of a hash list; a line that is not a digest is a bad record ``line N``."""
    source = os.fspath(path)
    if options.list_kind is not None and options.list_kind not in DIGEST_SIZES:
        known = ", ".join(DIGEST_SIZES)
        raise ImportFailed(source, f"unknown --list-kind {options.list_kind!r} (known: {known})")
    with open_binary(source) as stream:
        for number, line in numbered_lines(stream, source, report):
            text = line.strip()
            if not text or text.startswith(b"#"):
                continue
            try:
                kind = _kind_of(text, options.list_kind)
            except ValueError as err:
                report.bad(source, f"line {number}", str(err))
                continue
            entry = DigestEntry(kind, bytes.fromhex(text.decode("ascii")), options.category, options.priority)
            if admit(report, source, entry):
                yield entry


def _kind_of(text: bytes, list_kind: str | None) -> str:
    """The kind of the hex digest ``text``; ValueError saying why it is not one."""
    if not is_hex(text):
        raise ValueError(f"not a hex digest: {quote(text)}")
    digits = len(text)
    if list_kind is not None:
        expected = 2 * DIGEST_SIZES[list_kind]
        if digits != expected:
            raise ValueError(f"{digits} hex digits, a {list_kind} digest has {expected}")
        return list_kind
    if digits % 2 == 0 and digits // 2 in KIND_BY_SIZE:
        return KIND_BY_SIZE[digits // 2]
    if digits == 64:
        raise ValueError("64 hex digits is sha256 or blake3: give --list-kind")
    raise ValueError(f"{digits} hex digits is no digest length (md5 has 32, sha1 40)")
