"""The ``list`` input: one hex digest per line.

Either case and surrounding whitespace are fine; blank lines and lines starting with ``#`` are
skipped. The kind is ``--list-kind`` when given (every line must then have its length), otherwise
it follows from the length: 32 hex digits md5, 40 sha1. 64 digits could be sha256 or blake3, so such
a line needs ``--list-kind``. Every entry gets the category and priority of the options.

Lists can hold tens of millions of lines, so this reader yields ``DigestBatch`` es of up to
``BATCH`` digests per kind and does as little as possible per line.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterator
from typing import BinaryIO

from filters.digests import DIGEST_SIZES, KIND_BY_SIZE
from filters.errors import ImportFailed
from filters.importers import DigestBatch, ImportOptions, ImportReport
from filters.importers.common import (
    EMPTY_CONTENT,
    EMPTY_CONTENT_DIGESTS,
    MAX_LINE_BYTES,
    UTF8_BOM,
    open_binary,
    quote,
)

BATCH = 65_536
BLOCK_BYTES = 4 << 20


def read_hash_list(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestBatch]:
    """The digests of a hash list in batches; a line that is not a digest is a bad record ``line N``."""
    source = os.fspath(path)
    if options.list_kind is not None and options.list_kind not in DIGEST_SIZES:
        known = ", ".join(DIGEST_SIZES)
        raise ImportFailed(source, f"unknown --list-kind {options.list_kind!r} (known: {known})")
    if options.list_kind is not None:
        kind_by_digits = {2 * DIGEST_SIZES[options.list_kind]: options.list_kind}
    else:
        kind_by_digits = {2 * size: kind for size, kind in KIND_BY_SIZE.items()}
    pending: dict[str, list[bytes]] = {kind: [] for kind in kind_by_digits.values()}
    empty = {EMPTY_CONTENT_DIGESTS[kind] for kind in pending}
    with open_binary(source) as stream:
        for number, lines in _line_blocks(stream, source, report):
            for kind, digests in _block_digests(lines, kind_by_digits, number, source, options, report):
                if not empty.isdisjoint(digests):
                    report.leave_out(EMPTY_CONTENT)
                    digests = [d for d in digests if d not in empty]
                batch = pending[kind]
                batch.extend(digests)
                if len(batch) >= BATCH:
                    yield _flush(source, kind, batch, options, report)
                    pending[kind] = []
    for kind, batch in pending.items():
        if batch:
            yield _flush(source, kind, batch, options, report)


def _line_blocks(stream: BinaryIO, source: str, report: ImportReport) -> Iterator[tuple[int, list[bytes]]]:
    """Lists of lines (endings removed) read a block at a time, with the number of the first line."""
    number = 1
    rest = b""
    first = True
    while True:
        block = stream.read(BLOCK_BYTES)
        if first and block.startswith(UTF8_BOM):
            block = block[len(UTF8_BOM) :]
        first = False
        if not block:
            if rest:
                yield number, [rest.rstrip(b"\r")]
            return
        data = rest + block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE_BYTES:
                report.bad(source, f"line {number}", f"longer than {MAX_LINE_BYTES} bytes")
                _skip_to_newline(stream)
                number += 1
                rest = b""
            else:
                rest = data
            continue
        lines = data[:cut].split(b"\n")
        rest = data[cut + 1 :]
        yield number, lines
        number += len(lines)


def _skip_to_newline(stream: BinaryIO) -> None:
    while True:
        chunk = stream.readline(BLOCK_BYTES)
        if not chunk or chunk.endswith(b"\n"):
            return


def _block_digests(
    lines: list[bytes],
    kind_by_digits: dict[int, str],
    first_number: int,
    source: str,
    options: ImportOptions,
    report: ImportReport,
) -> Iterator[tuple[str, list[bytes]]]:
    """The digests of a block of lines, by kind. A block where every line is a bare digest of one
    length (the usual list) is decoded in one C call; any other block goes line by line."""
    lengths = set(map(len, lines))
    if len(lengths) == 1:
        digits = lengths.pop()
        kind = kind_by_digits.get(digits)
        if kind is not None:
            try:
                raw = binascii.unhexlify(b"".join(lines))
            except (ValueError, binascii.Error):
                pass
            else:
                size = digits // 2
                yield kind, [raw[i : i + size] for i in range(0, len(raw), size)]
                return
    by_kind: dict[str, list[bytes]] = {}
    for number, line in enumerate(lines, first_number):
        text = line.strip()
        if not text or text[0] == 0x23:  # '#'
            continue
        if len(text) > MAX_LINE_BYTES:
            report.bad(source, f"line {number}", f"longer than {MAX_LINE_BYTES} bytes")
            continue
        kind = kind_by_digits.get(len(text))
        try:
            if kind is None:
                raise ValueError
            by_kind.setdefault(kind, []).append(binascii.unhexlify(text))
        except (ValueError, binascii.Error):
            report.bad(source, f"line {number}", _why_not(text, options.list_kind))
    yield from by_kind.items()


def _flush(
    source: str, kind: str, digests: list[bytes], options: ImportOptions, report: ImportReport
) -> DigestBatch:
    batch = DigestBatch(kind, options.category, options.priority, digests)
    report.accept_batch(source, batch)
    return batch


def _why_not(text: bytes, list_kind: str | None) -> str:
    """Why ``text`` is not a digest of the list (only called for bad lines)."""
    if not all(c in b"0123456789abcdefABCDEF" for c in text):
        return f"not a hex digest: {quote(text)}"
    digits = len(text)
    if list_kind is not None:
        return f"{digits} hex digits, a {list_kind} digest has {2 * DIGEST_SIZES[list_kind]}"
    if digits == 64:
        return "64 hex digits is sha256 or blake3: give --list-kind"
    return f"{digits} hex digits is no digest length (md5 has 32, sha1 40)"
