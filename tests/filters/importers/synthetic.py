"""Shared helpers for the importer tests. Every input here is synthetic: random bytes and digests."""

from __future__ import annotations

import os
from pathlib import Path

from filters.digests import DIGEST_SIZES
from filters.importers import DigestEntry, ImportOptions, ImportReport, entries_of
from filters.importers.detect import read_input

# Digests of zero bytes, written out here so the tests do not share the readers' table.
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_BLAKE3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def random_digest(kind: str) -> bytes:
    return os.urandom(DIGEST_SIZES[kind])


def read_all(
    path: Path | str, fmt: str | None = None, options: ImportOptions | None = None
) -> tuple[list[DigestEntry], ImportReport]:
    """Every entry of one input and the report, the way ``filter build`` reads it."""
    options = options or ImportOptions()
    report = ImportReport()
    entries = list(entries_of(read_input(path, fmt, options, report)))
    return entries, report


def bad_locations(report: ImportReport) -> list[str]:
    return [record.location for record in report.bad_records]
