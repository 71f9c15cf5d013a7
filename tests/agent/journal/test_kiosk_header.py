"""The kiosk's name and location (``[kiosk]``) in every journal record (issue 14, item 11): added by
the journal beside the time fields, sealed with the record (never in the clear segment header),
absent when neither is configured, and a key no caller may use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from agent.journal import EncryptedJournal, PlainJournal
from agent.journal.plain import read_plain_journal
from agent.journal.records import KIOSK_KEY, kiosk_header, normalised
from agent.journal.sealing import station_segment_key
from agent.journal.segment_format import (
    RecordFrame,
    parse_frames,
    parse_header,
    record_associated_data,
    record_nonce,
)
from filters.errors import JournalError

NAME, LOCATION = "SYNTHETIC-BAY-7", "Synthetic office, floor 9"


def station_key(folder: Path) -> tuple[X25519PrivateKey, Path]:
    private = X25519PrivateKey.generate()
    public = folder / "station-journal.pub"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def opened_records(folder: Path, private: X25519PrivateKey) -> list[dict[str, Any]]:
    """Every record of every segment, decrypted as the station does."""
    records = []
    for segment in sorted(folder.glob("segment-*.ftj")):
        data = memoryview(segment.read_bytes())
        header = parse_header(data)
        aead = ChaCha20Poly1305(
            station_segment_key(private, header.ephemeral_key, header.kiosk_key, header.number)
        )
        for frame in parse_frames(data, header.frames_offset):
            if isinstance(frame, RecordFrame):
                plain = aead.decrypt(
                    record_nonce(frame.index),
                    bytes(frame.sealed),
                    record_associated_data(header.hash, frame.index),
                )
                records.append(cbor2.loads(plain))
    return records


def test_every_encrypted_record_carries_the_name_and_location(tmp_path: Path) -> None:
    private, public = station_key(tmp_path)
    kiosk = kiosk_header(NAME, LOCATION)
    journal = EncryptedJournal.open(
        tmp_path / "journal", tmp_path / "device.key", public, kiosk=kiosk, max_segment_records=2
    )
    for number in range(5):  # three segments: the header travels with each record, not the segment
        journal.append({"type": "test", "n": number})
    journal.close()
    records = opened_records(tmp_path / "journal", private)
    assert [r["n"] for r in records] == list(range(5))
    assert all(r[KIOSK_KEY] == {"name": NAME, "location": LOCATION} for r in records)
    assert all(list(r)[:2] == ["time", "kiosk"] for r in records)
    for segment in (tmp_path / "journal").glob("segment-*.ftj"):
        data = segment.read_bytes()
        assert NAME.encode() not in data and b"Synthetic office" not in data, "sealed, never in the clear"


def test_no_kiosk_field_when_neither_is_set(tmp_path: Path) -> None:
    private, public = station_key(tmp_path)
    assert kiosk_header("", "") is None
    with EncryptedJournal.open(
        tmp_path / "journal", tmp_path / "device.key", public, kiosk=kiosk_header("", "")
    ) as journal:
        journal.append({"type": "test"})
    (record,) = opened_records(tmp_path / "journal", private)
    assert KIOSK_KEY not in record and record["type"] == "test"


def test_one_of_the_two_set() -> None:
    assert kiosk_header("", LOCATION) == {"name": "", "location": LOCATION}
    assert kiosk_header(NAME, "") == {"name": NAME, "location": ""}


def test_the_plain_journal_carries_it_too(tmp_path: Path) -> None:
    with PlainJournal.open(tmp_path, kiosk=kiosk_header(NAME, "")) as journal:
        journal.append({"type": "lights", "shown": "green"})
    (record,), torn = read_plain_journal(tmp_path)
    assert record[KIOSK_KEY] == {"name": NAME, "location": ""} and record["shown"] == "green" and torn == 0


def test_a_caller_cannot_write_the_kiosk_field(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="'kiosk' is reserved"):
        normalised({"type": "scan", "kiosk": {"name": "forged"}})
    with (
        PlainJournal.open(tmp_path, kiosk=kiosk_header(NAME, LOCATION)) as journal,
        pytest.raises(JournalError, match="reserved"),
    ):
        journal.append({"type": "scan", "kiosk": "another"})
    assert read_plain_journal(tmp_path) == ([], 0)
