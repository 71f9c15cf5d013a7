"""The digests as docs/filter-format.md defines them, written out without ``filters.digests``."""

from __future__ import annotations

import hashlib

import blake3

BLOCK = 4096


def reference_sample(data: bytes) -> bytes:
    size = len(data)
    if size <= 3 * BLOCK:
        sampled = data
    else:
        middle = size // 2 // BLOCK * BLOCK
        last = size // BLOCK * BLOCK - BLOCK
        sampled = data[:BLOCK] + data[middle : middle + BLOCK] + data[last : last + BLOCK]
    return blake3.blake3(b"fieldtriage sample v2\x00" + size.to_bytes(8, "little") + sampled).digest()


def reference_digest(kind: str, data: bytes) -> bytes:
    if kind == "sample":
        return reference_sample(data)
    if kind == "blake3":
        return blake3.blake3(data).digest()
    return hashlib.new(kind, data).digest()
