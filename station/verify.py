"""Verify one segment file before trusting any of it, then open its authentic records.

Order: header format and signature (by the kiosk key in the header), station key id, then per
record frame: signature over (header hash, index, chain hash), chain link to the previous index,
and the AEAD tag while decrypting. A record is kept only when its signature verifies and it
decrypts; everything else becomes a ``Finding`` naming the segment and record. Records after a
damaged one stay verifiable because each frame carries its own signed chain hash.

An exported copy ends with an export seal (docs/journal-format.md, section 8): the number of bytes
of the kiosk's file it copied and their BLAKE3, signed by the kiosk. When it verifies, the copy is
the kiosk's file whole, and what it holds (a torn end included) is what the kiosk had. A copy in a
kiosk's export folder (named by its kiosk id) from a format 2 writer without a valid export seal is
an alarm: it was cut short or altered after it left the kiosk, and records may be missing at its
end. Format 1 writers made no export seals: such a copy, if not sealed, cannot be checked whole
(a notice). A kiosk's own journal folder holds no export seals and is read as before.

Example: see tests/station/test_verify.py (segments are built by the kiosk writer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from agent.journal.records import RESERVED_KEY, plain_value
from agent.journal.sealing import station_segment_key
from agent.journal.segment_format import (
    HEADER_SIGNATURE_CONTEXT,
    ExportSeal,
    MalformedFrame,
    RecordFrame,
    SealFrame,
    SegmentFormatError,
    SegmentHeader,
    TornTail,
    export_digest,
    export_seal_signed_message,
    find_export_seal,
    next_chain,
    parse_frames,
    parse_header,
    record_associated_data,
    record_nonce,
    record_signed_message,
    seal_signed_message,
    segment_number_of,
)
from filters.errors import FieldtriageError
from station.findings import Finding, Severity


@dataclass(frozen=True)
class OpenedRecord:
    index: int
    chain: bytes
    body: dict[str, Any]

    @property
    def time(self) -> dict[str, Any]:
        value = self.body.get(RESERVED_KEY)
        return value if isinstance(value, dict) else {}


@dataclass
class VerifiedSegment:
    path: Path
    header: SegmentHeader
    records: list[OpenedRecord] = field(default_factory=list)
    seal: tuple[int, bytes] | None = None
    torn_bytes: int = 0
    findings: list[Finding] = field(default_factory=list)
    whole: bool = False  # an export seal vouches for every byte: nothing was cut or altered after export


class _SegmentCheck:
    def __init__(self, path: Path, header: SegmentHeader, key: bytes) -> None:
        self.segment = VerifiedSegment(path, header)
        self.header = header
        self.kiosk = Ed25519PublicKey.from_public_bytes(header.kiosk_key)
        self.aead = ChaCha20Poly1305(key)
        self.chains: dict[int, bytes] = {-1: header.hash}
        self.damaged_positions: set[int] = set()
        self.highest = -1

    def report(self, severity: Severity, record: int | None, message: str) -> None:
        header = self.header
        self.segment.findings.append(
            Finding(severity, str(self.segment.path), header.kiosk_id, header.number, record, message)
        )

    def signed(self, signature: bytes, message: bytes) -> bool:
        try:
            self.kiosk.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def record(self, frame: RecordFrame, position: int) -> None:
        index, header_hash = frame.index, self.header.hash
        if not self.signed(frame.signature, record_signed_message(header_hash, index, frame.chain)):
            self.damaged_positions.add(position)
            self.report(
                "alarm", position, f"frame at offset {frame.offset}: signature does not verify (altered)"
            )
            return
        if index in self.chains:
            same = self.chains[index] == frame.chain
            what = "a second copy of" if same else "a different record with the index of"
            self.report(
                "alarm", index, f"frame at offset {frame.offset} is {what} record {index} (duplicate)"
            )
            return
        if index < self.highest:
            self.report("alarm", index, f"appears after record {self.highest} (out of order)")
        self.highest = max(self.highest, index)
        previous = self.chains.get(index - 1)
        self.chains[index] = frame.chain
        linked = previous is None or next_chain(previous, frame.sealed) == frame.chain
        try:
            plaintext = self.aead.decrypt(
                record_nonce(index), bytes(frame.sealed), record_associated_data(header_hash, index)
            )
        except InvalidTag:
            self.report("alarm", index, "content altered (chain hash and authentication tag do not match)")
            return
        if not linked:
            self.report("alarm", index, f"does not chain to record {index - 1} (a record was replaced)")
        body = _record_body(plaintext)
        if isinstance(body, str):
            self.report("alarm", index, f"decrypts but is not a journal record: {body}")
            return
        self.segment.records.append(OpenedRecord(index, frame.chain, body))

    def seal(self, frame: SealFrame) -> None:
        message = seal_signed_message(self.header.hash, frame.count, frame.chain)
        if not self.signed(frame.signature, message):
            self.report("alarm", None, f"seal at offset {frame.offset}: signature does not verify (altered)")
            return
        self.segment.seal = (frame.count, frame.chain)
        final = self.chains.get(frame.count - 1)
        if final is not None and final != frame.chain:
            self.report("alarm", frame.count - 1, "is not the record the seal closed the segment with")
        if self.highest >= frame.count:
            self.report("alarm", self.highest, f"lies beyond the seal's record count {frame.count}")

    def finish(self) -> None:
        expected = self.segment.seal[0] if self.segment.seal else self.highest + 1
        missing = [i for i in range(expected) if i not in self.chains and i not in self.damaged_positions]
        for first, last in _ranges(missing):
            what = f"record {first}" if first == last else f"records {first}-{last}"
            reason = "before the seal" if self.segment.seal and last >= self.highest else "in the chain"
            self.report("alarm", first, f"{what} missing ({reason})")


def verify_segment(
    path: Path, data: bytes, station_key: X25519PrivateKey, station_key_id: bytes, expected_kiosk: str | None
) -> tuple[VerifiedSegment | None, list[Finding]]:
    """The authentic content of one segment file and every finding; None when nothing is usable."""
    view = memoryview(data)
    try:
        header = parse_header(view)
        kiosk = Ed25519PublicKey.from_public_bytes(header.kiosk_key)
        kiosk.verify(header.signature, HEADER_SIGNATURE_CONTEXT + header.raw)
    except (SegmentFormatError, ValueError) as err:
        return None, [
            Finding("alarm", str(path), expected_kiosk, segment_number_of(path.name), None, f"{err}")
        ]
    except InvalidSignature:
        reason = "header signature does not verify (header altered)"
        return None, [Finding("alarm", str(path), expected_kiosk, segment_number_of(path.name), None, reason)]
    findings = []

    def note(severity: Severity, message: str) -> None:
        findings.append(Finding(severity, str(path), header.kiosk_id, header.number, None, message))

    if expected_kiosk is not None and header.kiosk_id != expected_kiosk:
        note(
            "alarm",
            f"written by kiosk {header.kiosk_id}, not by kiosk {expected_kiosk} whose folder holds it",
        )
    named = segment_number_of(path.name)
    if named is not None and named != header.number:
        note("alarm", f"file name says segment {named} (segments renamed or reordered)")
    body, whole = _export_check(view, header, expected_kiosk is not None, note)
    if header.station_key_id != station_key_id:
        note(
            "alarm",
            f"sealed to station key {header.station_key_id.hex()}, not this station's: cannot decrypt",
        )
        return None, findings
    try:
        key = station_segment_key(station_key, header.ephemeral_key, header.kiosk_key, header.number)
    except ValueError:
        note("alarm", "ephemeral key is invalid: cannot decrypt")
        return None, findings
    check = _SegmentCheck(path, header, key)
    check.segment.findings.extend(findings)
    check.segment.whole = whole
    _walk_frames(check, body)
    check.finish()
    unsealed = not check.segment.seal and find_export_seal(view, header.frames_offset) is None
    if expected_kiosk is not None and header.format_version == 1 and unsealed:
        check.report(
            "notice",
            None,
            "exported without an export seal (a kiosk before format version 2): cannot be checked "
            "whole; records missing at its end show only against the next segment's header",
        )
    return check.segment, check.segment.findings


def _export_check(
    view: memoryview, header: SegmentHeader, exported: bool, note: Callable[[Severity, str], None]
) -> tuple[memoryview, bool]:
    """The kiosk's bytes in ``view`` (before its export seal) and whether the seal vouches for
    them; alarms for a seal that fails and for a format 2 copy in an export folder without one."""
    export = find_export_seal(view, header.frames_offset)
    if export is None:
        if exported and header.format_version >= 2:
            frames = parse_frames(view, header.frames_offset)  # lengths only: is a seal in there?
            sealed = any(isinstance(frame, SealFrame) for frame in frames)
            why = (
                "its seal, checked below, counts its records"
                if sealed
                else "records at its end may be missing"
            )
            note(
                "alarm",
                f"exported copy ends without its export seal: cut short or altered after export ({why})",
            )
        return view, False
    body = view[: export.offset]
    if not _export_seal_signed(header, export):
        note("alarm", f"export seal at offset {export.offset}: signature does not verify (altered)")
    elif export_digest(body) != export.digest:
        note(
            "alarm",
            f"exported copy differs from what the kiosk exported ({export.copied_bytes} bytes "
            "whose digest the export seal gives): altered after export",
        )
    else:
        return body, True
    return body, False


def _export_seal_signed(header: SegmentHeader, export: ExportSeal) -> bool:
    message = export_seal_signed_message(header.hash, export.copied_bytes, export.digest)
    try:
        Ed25519PublicKey.from_public_bytes(header.kiosk_key).verify(export.signature, message)
    except InvalidSignature:
        return False
    return True


def _walk_frames(check: _SegmentCheck, view: memoryview) -> None:
    position = 0
    for frame in parse_frames(view, check.header.frames_offset):
        if isinstance(frame, RecordFrame):
            check.record(frame, position)
            position += 1
        elif isinstance(frame, SealFrame):
            check.seal(frame)
        elif isinstance(frame, TornTail):
            check.segment.torn_bytes = frame.length
            why = (
                "a write cut short on the kiosk (the export seal vouches for these bytes)"
                if check.segment.whole
                else "a write cut short, or a damaged length"
            )
            check.report(
                "notice",
                position,
                f"incomplete frame at offset {frame.offset} ({frame.length} bytes) set aside: {why}",
            )
        elif isinstance(frame, MalformedFrame):
            check.report(
                "alarm",
                position,
                f"frame at offset {frame.offset}: {frame.reason}; "
                f"{frame.length} bytes from there cannot be read",
            )


def _record_body(plaintext: bytes) -> dict[str, Any] | str:
    try:
        body = cbor2.loads(plaintext)
        plain = plain_value(body, "record")
    except FieldtriageError as err:
        return err.reason
    except Exception as err:  # cbor2 raises several types for malformed input
        return f"malformed CBOR ({type(err).__name__})"
    if not isinstance(plain, dict) or not isinstance(plain.get(RESERVED_KEY), dict):
        return "not a map with time fields"
    return plain


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for number in numbers:
        if out and out[-1][1] == number - 1:
            out[-1] = (out[-1][0], number)
        else:
            out.append((number, number))
    return out
