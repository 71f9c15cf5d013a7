"""The ``icse`` input: Interpol ICSE CSV, semicolon separated, UTF-8 (a BOM is fine).

The header names the columns (``MD5;SHA1;PhotoDNA;Image ID;Is distributed;...``); the MD5, SHA1 and,
if there is one, SHA256 columns are found by name, case-insensitively, and the others are ignored.
Each row gives its non-empty digests, labelled category ``icse`` with the priority of the options.
A row that is not UTF-8, lacks a digest column, has no digest or has a malformed one is a bad
record ``line N`` and gives no entry.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.common import admit, numbered_lines, open_binary, parse_hex_digest

CATEGORY = "icse"
DIGEST_COLUMNS = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}


class _Lines:
    """Decoded lines for the csv module, remembering the number of the last one handed out."""

    def __init__(self, numbered: Iterator[tuple[int, bytes]], source: str, report: ImportReport) -> None:
        self.numbered = numbered
        self.source = source
        self.report = report
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for number, line in self.numbered:
            self.number = number
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                self.report.bad(self.source, f"line {number}", f"not UTF-8 (byte {err.start + 1})")
                continue
            yield text + "\n"


def read_icse(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestEntry]:
    """The entries of an ICSE CSV export."""
    source = os.fspath(path)
    with open_binary(source) as stream:
        lines = _Lines(numbered_lines(stream, source, report), source, report)
        rows = csv.reader(lines, delimiter=";")
        header = next(rows, None)
        columns = _digest_columns(header or [])
        if not columns:
            raise ImportFailed(source, "line 1: no MD5 or SHA1 column in the header: not an ICSE CSV file")
        while True:
            try:
                row = next(rows, None)
            except csv.Error as err:
                report.bad(source, f"line {lines.number}", f"not valid CSV: {err}")
                continue
            if row is None:
                break
            if not any(field.strip() for field in row):
                continue
            try:
                digests = _row_digests(row, columns)
            except ValueError as err:
                report.bad(source, f"line {lines.number}", str(err))
                continue
            for kind, digest in digests:
                entry = DigestEntry(kind, digest, CATEGORY, options.priority)
                if admit(report, source, entry):
                    yield entry


def _digest_columns(header: list[str]) -> list[tuple[int, str, str]]:
    """(index, kind, column name) of each digest column in ``header``."""
    columns = []
    for index, name in enumerate(header):
        kind = DIGEST_COLUMNS.get(name.strip().lower())
        if kind is not None:
            columns.append((index, kind, name.strip()))
    return columns


def _row_digests(row: list[str], columns: list[tuple[int, str, str]]) -> list[tuple[str, bytes]]:
    digests = []
    for index, kind, name in columns:
        if index >= len(row):
            raise ValueError(f"{len(row)} fields, no {name} column")
        value = row[index].strip()
        if value:
            try:
                digests.append((kind, parse_hex_digest(value, kind)))
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from err
    if not digests:
        raise ValueError("no digest: " + " and ".join(name for _, _, name in columns) + " are empty")
    return digests
