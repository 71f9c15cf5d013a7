"""Where a journal stands on disk: its segment files, and the end of the last one.

At a restart the kiosk continues numbering and the chain from the last segment's tail. It reads only
what is not secret (the header, frame lengths, chain hashes and signatures) and never decrypts (it
cannot: the segment key died with the process). A torn or damaged end is set aside: the new segment
records how many records and torn bytes the previous one had, so the station can tell a power cut
from records removed later. The set-aside bytes stay in their file, which is never written again.

What a power cut, a SIGKILL or a full disk can leave is set aside: a segment holding only its
preamble, a frame cut short, zeros where a write never reached the disk, and a segment whose
preamble itself was cut short while it was created (empty, zeros, or a prefix of a preamble
followed by zeros: it can hold no record). What none of them can make (a segment signed by another
key or with another number, a header whose signature fails, a file that is not a segment) is a
``JournalError`` naming the file: someone must look before the kiosk writes on.

Example::

    >>> import tempfile, pathlib
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> read_tail(pathlib.Path(tempfile.mkdtemp()), Ed25519PrivateKey.generate().public_key())
    JournalTail(next_number=0, previous_chain=b'...', previous_records=0, previous_sealed=True, previous_torn_bytes=0)
"""  # noqa: E501

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal.keys import raw_public
from agent.journal.segment_format import (
    CHAIN_BYTES,
    HEADER_SIGNATURE_CONTEXT,
    MAGIC,
    MAX_HEADER_BYTES,
    PREAMBLE,
    SIGNATURE_BYTES,
    RecordFrame,
    SealFrame,
    SegmentFormatError,
    next_chain,
    parse_frames,
    parse_header,
    record_signed_message,
    seal_signed_message,
    segment_number_of,
)
from filters.errors import JournalError
from filters.safe_files import read_regular_file

MAX_SEGMENT_FILE_BYTES = 1 << 30
DEVICE_KEY_NOTE = ".device-key-path"  # the device key the journal was last opened with: exports sign with it


@dataclass(frozen=True)
class JournalTail:
    next_number: int
    previous_chain: bytes
    previous_records: int
    previous_sealed: bool
    previous_torn_bytes: int

    def __repr__(self) -> str:  # chain bytes are noise in logs and doctests
        return (
            f"JournalTail(next_number={self.next_number}, previous_chain=b'...', "
            f"previous_records={self.previous_records}, previous_sealed={self.previous_sealed}, "
            f"previous_torn_bytes={self.previous_torn_bytes})"
        )


def segment_files(folder: Path) -> list[tuple[int, Path]]:
    """(number, path) of every segment file in ``folder``, by number."""
    try:
        names = os.listdir(folder)
    except OSError as err:
        raise JournalError(folder, f"cannot list: {err.strerror}") from err
    found = [(segment_number_of(name), folder / name) for name in names]
    return sorted((number, path) for number, path in found if number is not None)


def read_segment_bytes(path: Path) -> bytes:
    """The bytes of a segment file; JournalError for anything but a regular file (a FIFO would
    block the start) or one larger than any segment."""
    return read_regular_file(
        path, MAX_SEGMENT_FILE_BYTES, JournalError, "a segment this journal writes", follow_symlinks=False
    )


def remember_device_key(folder: Path, device_key_path: Path) -> None:
    """Note in the journal folder which device key writes it, so that an export (the daemon's
    sync, ``journal export`` by hand) signs with that key. Best effort: a full disk must not stop
    an open (the note is written again at the next one, and an export can be given the key)."""
    note = folder / DEVICE_KEY_NOTE
    text = f"{os.path.abspath(device_key_path)}\n"
    try:
        if note.is_file() and note.read_text(encoding="utf-8") == text:
            return
        temporary = folder / f"{DEVICE_KEY_NOTE}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(note)
    except (OSError, UnicodeDecodeError):
        pass


def remembered_device_key(folder: Path) -> Path | None:
    """The device key path ``remember_device_key`` noted, None when there is none."""
    try:
        text = (folder / DEVICE_KEY_NOTE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text else None


def read_tail(folder: Path, device_key: Ed25519PublicKey) -> JournalTail:
    """The state a new segment continues from; JournalError if the last segment is not ours."""
    segments = segment_files(folder)
    if not segments:
        return JournalTail(0, bytes(CHAIN_BYTES), 0, True, 0)
    number, path = segments[-1]
    data = memoryview(read_segment_bytes(path))
    try:
        header = parse_header(data)
    except SegmentFormatError as err:
        if cut_while_created(data):  # holds no record: its preamble never reached the disk whole
            return JournalTail(number + 1, bytes(CHAIN_BYTES), 0, False, len(data))
        raise JournalError(path, f"last segment is not one this journal wrote: {err}") from err
    if header.kiosk_key != raw_public(device_key):
        raise JournalError(path, f"last segment was written by another device key (kiosk {header.kiosk_id})")
    if header.number != number:
        raise JournalError(path, f"last segment's header says segment {header.number} (renamed?)")
    if not _verifies(device_key, header.signature, HEADER_SIGNATURE_CONTEXT + header.raw):
        raise JournalError(path, "last segment's header signature does not verify")
    chain, count, sealed, end = header.hash, 0, False, header.frames_offset
    # The chain alone is walked; only the last record's signature is checked (one verification).
    last: tuple[bytes, int, int, RecordFrame | None] = (chain, count, end, None)
    history = [last]
    for frame in parse_frames(data, header.frames_offset):
        if isinstance(frame, RecordFrame):
            if frame.index != count or next_chain(chain, frame.sealed) != frame.chain:
                break
            chain, count, end = frame.chain, count + 1, frame.end
            history = [history[-1], (chain, count, end, frame)]
        elif isinstance(frame, SealFrame):
            message = seal_signed_message(header.hash, frame.count, frame.chain)
            if (
                frame.count == count
                and frame.chain == chain
                and _verifies(device_key, frame.signature, message)
            ):
                sealed, end = True, frame.end
            break
        else:  # a torn frame, or bytes that are no frame (zeros a power cut left): set aside
            break
    if not sealed:
        chain, count, end, last_record = history[-1]
        if last_record is not None and not _verifies(
            device_key, last_record.signature, record_signed_message(header.hash, count - 1, chain)
        ):
            chain, count, end, _ = history[0]
    return JournalTail(number + 1, chain, count, sealed, len(data) - end)


def cut_while_created(data: memoryview) -> bool:
    """Whether bytes that do not parse as a preamble are what a cut-short creation leaves: what
    reached the disk ends (before trailing zeros) inside a preamble that starts as ours.

    >>> [cut_while_created(memoryview(b)) for b in (b"", bytes(512), MAGIC[:5], b"PK" + bytes(9))]
    [True, True, True, False]
    """
    written = bytes(data).rstrip(b"\0")
    if len(written) <= len(MAGIC):
        return MAGIC.startswith(written)
    if not written.startswith(MAGIC):
        return False
    if len(written) < PREAMBLE.size:
        return True  # the header length itself was cut
    length: int = PREAMBLE.unpack_from(written, 0)[1]
    return 0 < length <= MAX_HEADER_BYTES and len(written) < PREAMBLE.size + length + SIGNATURE_BYTES


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
