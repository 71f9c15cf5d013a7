"""Segment keys: sealed to the station's X25519 key by ephemeral-static ECDH and HKDF-SHA256.

The kiosk makes a fresh ephemeral key pair per segment, derives the segment key, writes the
ephemeral public key into the segment header and forgets the ephemeral private key: from then on
only the station (with its X25519 private key) can derive the key again. Every record of a segment
is sealed with ChaCha20-Poly1305 under that key with the nonce ``0^8 || u32 index``: one key per
segment and one index per record, so no nonce is ever used twice under one key.

Example::

    >>> from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    >>> station = X25519PrivateKey.generate()
    >>> ephemeral, key = new_segment_key(station.public_key(), bytes(32), 7)
    >>> station_segment_key(station, ephemeral, bytes(32), 7) == key
    True
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.journal.keys import raw_public
from agent.journal.segment_format import SEGMENT_KEY_INFO

SEGMENT_KEY_BYTES = 32


def _derive(shared: bytes, ephemeral_raw: bytes, station_raw: bytes, kiosk_raw: bytes, number: int) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=SEGMENT_KEY_BYTES,
        salt=ephemeral_raw + station_raw,
        info=SEGMENT_KEY_INFO + kiosk_raw + number.to_bytes(8, "big"),
    ).derive(shared)


def new_segment_key(station: X25519PublicKey, kiosk_raw: bytes, number: int) -> tuple[bytes, bytes]:
    """(ephemeral public key, segment key) for segment ``number`` of the kiosk ``kiosk_raw``."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = raw_public(ephemeral.public_key())
    key = _derive(ephemeral.exchange(station), ephemeral_raw, raw_public(station), kiosk_raw, number)
    return ephemeral_raw, key


def station_segment_key(
    station: X25519PrivateKey, ephemeral_raw: bytes, kiosk_raw: bytes, number: int
) -> bytes:
    """The segment key as the station derives it; ValueError for a degenerate ephemeral key."""
    shared = station.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
    return _derive(shared, ephemeral_raw, raw_public(station.public_key()), kiosk_raw, number)
