"""The bytes of a journal segment file, shared by the kiosk (writer) and the station (reader).

docs/journal-format.md is the specification; this module is its code. A segment file is::

    MAGIC | u32 header_length | header (CBOR map) | header signature (64)
    then frames, each a record frame or (last, once) a seal frame:
    b"R" | u32 index | u32 sealed_length | sealed record | chain hash (32) | signature (64)
    b"S" | u32 record_count | final chain hash (32) | signature (64)

An exported copy (a sync stick, ``journal export``) is the kiosk's file, byte for byte, followed by
one export seal, which is never in the kiosk's own file::

    b"E" | u64 copied_bytes | BLAKE3 of those bytes (32) | signature (64)

All integers are big-endian. Parsing checks every length against the bytes that remain and never
decrypts: the kiosk reads its own tails with it, the station verifies chains before decrypting.

Example::

    >>> frame = encode_record_frame(0, bytes(16), bytes(32), bytes(64))
    >>> [type(f).__name__ for f in parse_frames(memoryview(frame), 0)]
    ['RecordFrame']
    >>> copy = frame + encode_export_seal(len(frame), export_digest(frame), bytes(64))
    >>> find_export_seal(memoryview(copy), 0).copied_bytes == len(frame)
    True
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import blake3

from filters.strict_cbor import CborError, decode

MAGIC = b"FTJSEG\x00\x01"
FORMAT_NAME = "fieldtriage-journal"
FORMAT_VERSION = 2  # what this writer makes: version 1's bytes, and every copy exported is sealed
READABLE_VERSIONS = (1, 2)
SEGMENT_PREFIX = "segment-"
SEGMENT_SUFFIX = ".ftj"
MAX_HEADER_BYTES = 4096
MAX_SEALED_BYTES = 8 << 20
TAG_BYTES = 16
CHAIN_BYTES = 32
SIGNATURE_BYTES = 64
RAW_KEY_BYTES = 32
KEY_ID_BYTES = 16
RECORD_TYPE = b"R"
SEAL_TYPE = b"S"
RECORD_HEAD = struct.Struct(">cII")  # type, index, sealed length
SEAL_HEAD = struct.Struct(">cI")  # type, record count
SEAL_FRAME_BYTES = SEAL_HEAD.size + CHAIN_BYTES + SIGNATURE_BYTES
EXPORT_SEAL_TYPE = b"E"
EXPORT_SEAL_HEAD = struct.Struct(">cQ")  # type, bytes of the kiosk's file copied before it
EXPORT_DIGEST_BYTES = 32
EXPORT_SEAL_BYTES = EXPORT_SEAL_HEAD.size + EXPORT_DIGEST_BYTES + SIGNATURE_BYTES
PREAMBLE = struct.Struct(">8sI")  # magic, header length

HEADER_HASH_CONTEXT = b"fieldtriage journal header hash v1\x00"
HEADER_SIGNATURE_CONTEXT = b"fieldtriage journal header v1\x00"
RECORD_SIGNATURE_CONTEXT = b"fieldtriage journal record v1\x00"
SEAL_SIGNATURE_CONTEXT = b"fieldtriage journal seal v1\x00"
EXPORT_SEAL_SIGNATURE_CONTEXT = b"fieldtriage journal export seal v1\x00"
SEGMENT_KEY_INFO = b"fieldtriage journal segment key v1\x00"

HEADER_FIELDS = {
    "format",
    "format_version",
    "kiosk_key",
    "station_key_id",
    "segment",
    "previous_chain",
    "previous_records",
    "previous_sealed",
    "previous_torn_bytes",
    "ephemeral_key",
    "created",
    "writer",
}
CREATED_FIELDS = {"wall_ns", "monotonic_ns", "boot_id", "clock_synchronised"}


def segment_name(number: int) -> str:
    return f"{SEGMENT_PREFIX}{number:08d}{SEGMENT_SUFFIX}"


def segment_number_of(name: str) -> int | None:
    """The number in a segment file name, None for any other name."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
    return int(digits) if digits.isdigit() and digits.isascii() else None


def key_id_of_raw(raw_public_key: bytes) -> bytes:
    """Key id of any raw 32-byte public key (Ed25519 or X25519): BLAKE3, first 16 bytes."""
    return blake3.blake3(raw_public_key).digest(KEY_ID_BYTES)


def header_hash_of(header: bytes | memoryview) -> bytes:
    return blake3.blake3(HEADER_HASH_CONTEXT + bytes(header)).digest()


def next_chain(previous: bytes, sealed: bytes | memoryview) -> bytes:
    hasher = blake3.blake3(previous)
    hasher.update(sealed)
    return hasher.digest()


def record_signed_message(header_hash: bytes, index: int, chain: bytes) -> bytes:
    return RECORD_SIGNATURE_CONTEXT + header_hash + index.to_bytes(4, "big") + chain


def seal_signed_message(header_hash: bytes, count: int, chain: bytes) -> bytes:
    return SEAL_SIGNATURE_CONTEXT + header_hash + count.to_bytes(4, "big") + chain


def export_digest(copied: bytes | memoryview) -> bytes:
    """BLAKE3 of the bytes an export copied (the kiosk's file as it was, from its first byte)."""
    return blake3.blake3(copied).digest()


def export_seal_signed_message(header_hash: bytes, copied_bytes: int, digest: bytes) -> bytes:
    return EXPORT_SEAL_SIGNATURE_CONTEXT + header_hash + copied_bytes.to_bytes(8, "big") + digest


def record_nonce(index: int) -> bytes:
    return bytes(8) + index.to_bytes(4, "big")


def record_associated_data(header_hash: bytes, index: int) -> bytes:
    return header_hash + index.to_bytes(4, "big")


def encode_preamble(header: bytes, signature: bytes) -> bytes:
    return PREAMBLE.pack(MAGIC, len(header)) + header + signature


def encode_record_frame(index: int, sealed: bytes, chain: bytes, signature: bytes) -> bytes:
    return RECORD_HEAD.pack(RECORD_TYPE, index, len(sealed)) + sealed + chain + signature


def encode_seal_frame(count: int, chain: bytes, signature: bytes) -> bytes:
    return SEAL_HEAD.pack(SEAL_TYPE, count) + chain + signature


def encode_export_seal(copied_bytes: int, digest: bytes, signature: bytes) -> bytes:
    return EXPORT_SEAL_HEAD.pack(EXPORT_SEAL_TYPE, copied_bytes) + digest + signature


class SegmentFormatError(ValueError):
    """The preamble or header cannot be parsed (the message says where)."""


@dataclass(frozen=True)
class SegmentHeader:
    raw: bytes
    signature: bytes
    hash: bytes
    format_version: int
    kiosk_key: bytes
    station_key_id: bytes
    number: int
    previous_chain: bytes
    previous_records: int
    previous_sealed: bool
    previous_torn_bytes: int
    ephemeral_key: bytes
    created: dict[str, Any]
    writer: str
    frames_offset: int

    @property
    def kiosk_id(self) -> str:
        return key_id_of_raw(self.kiosk_key).hex()


def parse_header(data: memoryview) -> SegmentHeader:
    """Parse (not verify) the preamble and header at the start of ``data``."""
    if len(data) < PREAMBLE.size:
        raise SegmentFormatError(f"shorter than a segment preamble ({len(data)} bytes)")
    magic, length = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise SegmentFormatError("not a fieldtriage journal segment (bad magic)")
    if not 0 < length <= MAX_HEADER_BYTES:
        raise SegmentFormatError(f"header length {length} out of range")
    end = PREAMBLE.size + length
    if end + SIGNATURE_BYTES > len(data):
        raise SegmentFormatError("truncated inside the header")
    raw = bytes(data[PREAMBLE.size : end])
    try:
        fields = decode(raw)
    except CborError as err:
        raise SegmentFormatError(f"malformed header: {err}") from err
    return _header_from_fields(fields, raw, bytes(data[end : end + SIGNATURE_BYTES]), end + SIGNATURE_BYTES)


def _header_from_fields(fields: object, raw: bytes, signature: bytes, frames_offset: int) -> SegmentHeader:
    if not isinstance(fields, dict) or fields.get("format") != FORMAT_NAME:
        raise SegmentFormatError("header is not a fieldtriage journal header")
    version = fields.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise SegmentFormatError(f"unsupported format version {fields.get('format_version')!r}")
    unknown = set(fields) - HEADER_FIELDS
    missing = HEADER_FIELDS - set(fields)
    if unknown or missing:
        raise SegmentFormatError(f"header field {sorted(unknown or missing)[0]!r} is unknown or missing")
    created = fields["created"]
    if not isinstance(created, dict) or set(created) != CREATED_FIELDS:
        raise SegmentFormatError("header field 'created' is malformed")
    return SegmentHeader(
        raw=raw,
        signature=signature,
        hash=header_hash_of(raw),
        format_version=version,
        kiosk_key=_blob(fields, "kiosk_key", RAW_KEY_BYTES),
        station_key_id=_blob(fields, "station_key_id", KEY_ID_BYTES),
        number=_uint(fields, "segment"),
        previous_chain=_blob(fields, "previous_chain", CHAIN_BYTES),
        previous_records=_uint(fields, "previous_records"),
        previous_sealed=_bool(fields, "previous_sealed"),
        previous_torn_bytes=_uint(fields, "previous_torn_bytes"),
        ephemeral_key=_blob(fields, "ephemeral_key", RAW_KEY_BYTES),
        created=dict(created),
        writer=_text(fields, "writer"),
        frames_offset=frames_offset,
    )


def _blob(fields: dict[str, Any], name: str, length: int) -> bytes:
    value = fields[name]
    if not isinstance(value, memoryview) or len(value) != length:
        raise SegmentFormatError(f"header field {name!r} is not {length} bytes")
    return bytes(value)


def _uint(fields: dict[str, Any], name: str) -> int:
    value = fields[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
        raise SegmentFormatError(f"header field {name!r} is not an integer below 2^32")
    return value


def _bool(fields: dict[str, Any], name: str) -> bool:
    value = fields[name]
    if not isinstance(value, bool):
        raise SegmentFormatError(f"header field {name!r} is not true or false")
    return value


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str) or len(value) > 128:
        raise SegmentFormatError(f"header field {name!r} is not text of at most 128")
    return value


@dataclass(frozen=True)
class RecordFrame:
    offset: int
    index: int
    sealed: memoryview
    chain: bytes
    signature: bytes
    end: int


@dataclass(frozen=True)
class SealFrame:
    offset: int
    count: int
    chain: bytes
    signature: bytes
    end: int


@dataclass(frozen=True)
class TornTail:
    """The data ends inside a frame: a write cut short (a power cut), set aside."""

    offset: int
    length: int


@dataclass(frozen=True)
class MalformedFrame:
    """A frame that cannot be parsed: nothing after ``offset`` can be located."""

    offset: int
    length: int
    reason: str
    claimed_index: int | None = None


Frame = RecordFrame | SealFrame | TornTail | MalformedFrame


@dataclass(frozen=True)
class ExportSeal:
    """The end of an exported copy: ``copied_bytes`` of the kiosk's file precede it (it starts at
    ``offset == copied_bytes``), ``digest`` is their BLAKE3, signed by the device key."""

    offset: int
    copied_bytes: int
    digest: bytes
    signature: bytes


def find_export_seal(data: memoryview, frames_offset: int) -> ExportSeal | None:
    """The export seal that ends ``data``, if its last bytes are one: an ``E`` whose length field
    says exactly the bytes before it, which hold at least the preamble. Its signature and digest
    are the caller's to check; the bytes before it are the kiosk's file, to be parsed as such."""
    offset = len(data) - EXPORT_SEAL_BYTES
    if offset < frames_offset:
        return None
    kind, copied = EXPORT_SEAL_HEAD.unpack_from(data, offset)
    if kind != EXPORT_SEAL_TYPE or copied != offset:
        return None
    digest_at = offset + EXPORT_SEAL_HEAD.size
    signature_at = digest_at + EXPORT_DIGEST_BYTES
    return ExportSeal(
        offset, copied, bytes(data[digest_at:signature_at]), bytes(data[signature_at : len(data)])
    )


def parse_frames(data: memoryview, offset: int) -> Iterator[Frame]:
    """Every frame from ``offset`` to the end; a ``TornTail`` or ``MalformedFrame`` ends the walk."""
    size = len(data)
    while offset < size:
        kind = bytes(data[offset : offset + 1])
        if kind == RECORD_TYPE:
            if offset + RECORD_HEAD.size > size:
                yield TornTail(offset, size - offset)
                return
            _, index, length = RECORD_HEAD.unpack_from(data, offset)
            if length < TAG_BYTES or length > MAX_SEALED_BYTES:
                yield MalformedFrame(offset, size - offset, f"sealed length {length} out of range", index)
                return
            start = offset + RECORD_HEAD.size
            end = start + length + CHAIN_BYTES + SIGNATURE_BYTES
            if end > size:
                yield TornTail(offset, size - offset)
                return
            chain_at = start + length
            yield RecordFrame(
                offset,
                index,
                data[start:chain_at],
                bytes(data[chain_at : chain_at + CHAIN_BYTES]),
                bytes(data[chain_at + CHAIN_BYTES : end]),
                end,
            )
            offset = end
        elif kind == SEAL_TYPE:
            end = offset + SEAL_FRAME_BYTES
            if end > size:
                yield TornTail(offset, size - offset)
                return
            _, count = SEAL_HEAD.unpack_from(data, offset)
            chain_at = offset + SEAL_HEAD.size
            chain = bytes(data[chain_at : chain_at + CHAIN_BYTES])
            yield SealFrame(offset, count, chain, bytes(data[chain_at + CHAIN_BYTES : end]), end)
            if end < size:
                yield MalformedFrame(end, size - end, f"{size - end} bytes after the seal")
            return
        else:
            yield MalformedFrame(offset, size - offset, f"unknown frame type 0x{data[offset]:02x}")
            return
