"""What every reader shares: hex digest parsing, the digests of empty content, bounded line reading.

Example::

    >>> parse_hex_digest(b" D41D8CD98F00B204E9800998ECF8427E", "md5") == EMPTY_CONTENT_DIGESTS["md5"]
    True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import BinaryIO

import blake3

from filters.digests import DIGEST_SIZES, sample_digest_of_bytes
from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportReport

EMPTY_CONTENT_DIGESTS: dict[str, bytes] = {
    "md5": hashlib.md5(b"", usedforsecurity=False).digest(),
    "sha1": hashlib.sha1(b"", usedforsecurity=False).digest(),
    "sha256": hashlib.sha256(b"").digest(),
    "blake3": blake3.blake3(b"").digest(),
    "sample": sample_digest_of_bytes(b""),
}
EMPTY_CONTENT = "digest of empty content"
ZERO_LENGTH = "zero-length file"
MAX_LINE_BYTES = 64 * 1024
UTF8_BOM = b"\xef\xbb\xbf"

_HEX = re.compile(rb"[0-9A-Fa-f]+")


def admit(report: ImportReport, source: str, entry: DigestEntry) -> bool:
    """Count ``entry`` as accepted and return True, or leave it out if it is a digest of empty content."""
    if EMPTY_CONTENT_DIGESTS.get(entry.kind) == entry.digest:
        report.leave_out(EMPTY_CONTENT)
        return False
    report.accept(source, entry)
    return True


def parse_hex_digest(text: str | bytes, kind: str) -> bytes:
    """The digest of ``kind`` written in ``text`` (hex, either case, surrounding whitespace allowed).

    Raises ValueError with a reason quoting the text when it is not exactly that many hex digits.
    """
    size = DIGEST_SIZES[kind]
    stripped = text.strip()
    if len(stripped) == 2 * size:
        try:
            digest = bytes.fromhex(stripped.decode("ascii") if isinstance(stripped, bytes) else stripped)
        except ValueError:  # also UnicodeDecodeError
            pass
        else:
            # fromhex skips spaces, so the size proves that every character was a hex digit
            if len(digest) == size:
                return digest
    raise ValueError(f"not a {kind} digest ({2 * size} hex digits): {quote(text)}")


def is_hex(text: bytes) -> bool:
    return _HEX.fullmatch(text) is not None


def quote(value: object, limit: int = 80) -> str:
    """``value`` for an error message: one line, control characters escaped, at most ``limit`` chars."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_reason(err: OSError) -> str:
    """The short reason of an OSError ("No such file or directory"), or its message."""
    return err.strerror or str(err)


def one_line(err: Exception) -> str:
    """The first line of a library's error message (yajl adds lines pointing at the input)."""
    text = str(err)
    if text.startswith(("b'", 'b"')):
        text = text[2:]
    return re.split(r"\n|\\n", text, maxsplit=1)[0].strip()


def open_binary(path: str) -> BinaryIO:
    """``path`` opened for reading bytes; ImportFailed naming it if it cannot be."""
    try:
        return open(path, "rb")
    except OSError as err:
        raise ImportFailed(path, os_reason(err)) from err


def numbered_lines(stream: BinaryIO, source: str, report: ImportReport) -> Iterator[tuple[int, bytes]]:
    """The lines of ``stream`` numbered from 1, without line ending or a leading UTF-8 BOM.

    A line longer than ``MAX_LINE_BYTES`` is a bad record and is skipped without being held in
    memory, so a file with no line breaks cannot exhaust memory.
    """
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if number == 1 and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_LINE_BYTES)
            report.bad(source, f"line {number}", f"longer than {MAX_LINE_BYTES} bytes")
            continue
        yield number, line.rstrip(b"\r\n")
