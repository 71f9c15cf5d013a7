"""Generated pictures: small valid PNG files of random stripes, stand-ins for photos (synthetic)."""

from __future__ import annotations

import random
import struct
import zlib


def generated_picture(rng: random.Random, width: int = 64, height: int = 48) -> bytes:
    """A small valid PNG of random coloured stripes (stand-in for a photo)."""
    rows = []
    for _ in range(height):
        colour = bytes(rng.randrange(256) for _ in range(3))
        rows.append(b"\x00" + colour * width)
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    noise = rng.randbytes(rng.randrange(1000, 200_000))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"tEXt", b"Comment\x00" + noise.hex().encode()[: len(noise)])
        + chunk(b"IEND", b"")
    )
