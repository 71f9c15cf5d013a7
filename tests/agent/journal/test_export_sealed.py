"""What a kiosk exports is its journal file byte for byte, then an export seal it signs.

The export seal (docs/journal-format.md, section 8) is ``b"E" | u64 copied_bytes | BLAKE3 of those
bytes | Ed25519(device key, "fieldtriage journal export seal v1\\0" || header hash || u64
copied_bytes || BLAKE3)``. These tests build that message from the specification, not from the
code, and check it against every copy the real export makes: of a sealed segment, of the open one,
of one set aside after a power cut, by the sync path (rotate, then export) and by
``fieldtriage journal export``. The station's side is tests/station/test_export_whole.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.journal import cli as journal_cli
from agent.journal.keys import load_or_create_device_key, raw_public
from agent.journal.segment_format import header_hash_of, key_id_of_raw, parse_header
from agent.journal.sync import JOURNAL_FOLDER, export_segments, load_sync_state
from agent.journal.tail import segment_files
from filters.keys import generate_key_pair
from station.home import StationHome
from station.verify import verify_segment
from tests.agent.journal.helpers import make_station, open_journal, run_cli, write_records

SEAL_BYTES = 1 + 8 + 32 + 64
CONTEXT = b"fieldtriage journal export seal v1\x00"


def kiosk_id(tmp_path: Path) -> str:
    key = load_or_create_device_key(tmp_path / "device.key")
    return key_id_of_raw(raw_public(key.public_key())).hex()


def check_copy(original: bytes, copy: bytes, device_key: Ed25519PrivateKey) -> None:
    """``copy`` is ``original`` whole, then an export seal over it signed by ``device_key``."""
    assert len(copy) == len(original) + SEAL_BYTES
    assert copy[: len(original)] == original, "the kiosk's bytes, unchanged"
    seal = copy[len(original) :]
    assert seal[:1] == b"E"
    assert int.from_bytes(seal[1:9], "big") == len(original)
    digest = blake3.blake3(original).digest()
    assert seal[9:41] == digest
    header = parse_header(memoryview(original))
    assert header.format_version == 2
    message = CONTEXT + header_hash_of(header.raw) + len(original).to_bytes(8, "big") + digest
    device_key.public_key().verify(seal[41:], message)  # raises InvalidSignature otherwise


def copies_of(stick: Path, tmp_path: Path) -> dict[str, bytes]:
    folder = stick / JOURNAL_FOLDER / kiosk_id(tmp_path)
    return {p.name: p.read_bytes() for p in sorted(folder.glob("segment-*.ftj"))}


def opened(home: StationHome, path: Path, data: bytes) -> tuple[list[int], bool, list[str]]:
    """(record indexes, checked whole, findings) as the station's verification has them."""
    key = home.journal_private_key()
    verified, findings = verify_segment(
        path, data, key, key_id_of_raw(raw_public(key.public_key())), path.parent.name
    )
    assert verified is not None
    return [r.index for r in verified.records], verified.whole, [f.line() for f in findings]


def test_every_copy_is_the_kiosk_file_then_its_signed_export_seal(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home, max_segment_records=3)
    write_records(journal, 5)  # segment 0 sealed (3 records), segment 1 open (2)
    stick = tmp_path / "stick"
    assert [p.name for p in export_segments(tmp_path / "journal", stick)] == [
        "segment-00000000.ftj",
        "segment-00000001.ftj",
    ]
    device_key = load_or_create_device_key(tmp_path / "device.key")
    kiosk_files = {p.name: p.read_bytes() for _, p in segment_files(tmp_path / "journal")}
    copies = copies_of(stick, tmp_path)
    for name, copy in copies.items():
        check_copy(kiosk_files[name], copy, device_key)
    # the sync state counts the kiosk's bytes (what "synced" compares with), not the seal's
    assert load_sync_state(tmp_path / "journal") == {n: len(b) for n, b in kiosk_files.items()}
    # the open segment grows: copied again, whole, with a new seal; the sealed one is not
    write_records(journal, 1, start=5)
    assert [p.name for p in export_segments(tmp_path / "journal", stick)] == ["segment-00000001.ftj"]
    grown = (tmp_path / "journal" / "segment-00000001.ftj").read_bytes()
    check_copy(grown, copies_of(stick, tmp_path)["segment-00000001.ftj"], device_key)
    journal.close()
    folder = stick / JOURNAL_FOLDER / kiosk_id(tmp_path)
    assert opened(home, folder / "segment-00000001.ftj", (folder / "segment-00000001.ftj").read_bytes())[
        :2
    ] == (
        [0, 1, 2],
        True,
    )


def test_the_sync_path_rotates_then_exports_every_segment_sealed_and_whole(tmp_path: Path) -> None:
    """What agent/daemon/sync.py does: rotate() closes the open segment, then the export."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 4)
    journal.rotate()
    export_segments(tmp_path / "journal", tmp_path / "stick")
    original = (tmp_path / "journal" / "segment-00000000.ftj").read_bytes()
    copy = copies_of(tmp_path / "stick", tmp_path)["segment-00000000.ftj"]
    check_copy(original, copy, load_or_create_device_key(tmp_path / "device.key"))
    path = tmp_path / "stick" / JOURNAL_FOLDER / kiosk_id(tmp_path) / "segment-00000000.ftj"
    records, whole, findings = opened(home, path, copy)
    assert (records, whole, findings) == ([0, 1, 2, 3], True, [])
    journal.close()


def test_a_segment_set_aside_after_a_power_cut_is_exported_whole_torn_end_and_all(tmp_path: Path) -> None:
    """After a power cut the newest segment holds a torn frame, and no new segment exists until
    the next record: the export copies it as it is, and its seal vouches for the torn end too."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 3)
    assert journal._segment is not None and journal._lock_fd is not None
    os.write(journal._segment.fd, b"R\x00\x00\x00\x03\x00\x00\x01\x00" + b"half a record")  # cut short
    os.close(journal._segment.fd)
    os.close(journal._lock_fd)
    journal = open_journal(tmp_path, home)  # reopens: the torn end is set aside, no segment started
    original = (tmp_path / "journal" / "segment-00000000.ftj").read_bytes()
    export_segments(tmp_path / "journal", tmp_path / "stick")
    copy = copies_of(tmp_path / "stick", tmp_path)["segment-00000000.ftj"]
    check_copy(original, copy, load_or_create_device_key(tmp_path / "device.key"))
    path = tmp_path / "stick" / JOURNAL_FOLDER / kiosk_id(tmp_path) / "segment-00000000.ftj"
    records, whole, findings = opened(home, path, copy)
    assert records == [0, 1, 2] and whole
    assert len(findings) == 1 and findings[0].startswith("notice:") and "set aside" in findings[0], findings
    journal.close()


def test_journal_export_signs_with_the_key_the_journal_is_written_with(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    keys = tmp_path / "keys"
    journal = open_journal(tmp_path, home)  # device key in tmp_path, journal in tmp_path/journal
    write_records(journal, 2)
    device_key = load_or_create_device_key(tmp_path / "device.key")
    stick = tmp_path / "stick"
    stick.mkdir()
    argv = ["journal", "export", str(stick), "--journal", str(tmp_path / "journal")]
    status, out, err = run_cli(journal_cli.register, argv)
    assert (status, err) == (0, "") and out.endswith("1 segments copied\n")
    original = (tmp_path / "journal" / "segment-00000000.ftj").read_bytes()
    check_copy(original, copies_of(stick, tmp_path)["segment-00000000.ftj"], device_key)

    write_records(journal, 1, start=2)
    status, out, err = run_cli(journal_cli.register, [*argv, "--device-key", str(tmp_path / "device.key")])
    assert (status, err) == (0, "") and out.endswith("1 segments copied\n")
    original = (tmp_path / "journal" / "segment-00000000.ftj").read_bytes()
    check_copy(original, copies_of(stick, tmp_path)["segment-00000000.ftj"], device_key)

    # another kiosk's key never signs this journal's export
    keys.mkdir()
    other, _ = generate_key_pair(keys / "other")
    write_records(journal, 1, start=3)
    status, _, err = run_cli(journal_cli.register, [*argv, "--device-key", str(other)])
    assert status == 2 and err.count("\n") == 1 and f"not of kiosk {kiosk_id(tmp_path)}" in err
    # no key named and none noted (a journal last opened by an older version): one line, what to do
    (tmp_path / "journal" / ".device-key-path").unlink()
    status, _, err = run_cli(journal_cli.register, argv)
    assert status == 2 and err.count("\n") == 1 and "--device-key" in err
    journal.close()
    assert json.loads((tmp_path / "journal" / "sync-state.json").read_text())["exported"] == {
        "segment-00000000.ftj": len(original)
    }


def test_a_file_the_export_cannot_vouch_for_is_copied_as_it_is(tmp_path: Path) -> None:
    """A segment cut short while it was created (no header to bind a seal to) holds no record; it
    is copied unchanged for the station to report, and never stops the export."""
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    (tmp_path / "journal" / "segment-00000001.ftj").write_bytes(bytes(40))
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=2)
    export_segments(tmp_path / "journal", tmp_path / "stick")
    copies = copies_of(tmp_path / "stick", tmp_path)
    assert copies["segment-00000001.ftj"] == bytes(40)
    device_key = load_or_create_device_key(tmp_path / "device.key")
    for name in ("segment-00000000.ftj", "segment-00000002.ftj"):
        check_copy((tmp_path / "journal" / name).read_bytes(), copies[name], device_key)


def test_a_seal_made_with_another_key_does_not_verify(tmp_path: Path) -> None:
    """The check above is a real one: a seal signed by any other key fails it."""
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1)
    export_segments(tmp_path / "journal", tmp_path / "stick")
    original = (tmp_path / "journal" / "segment-00000000.ftj").read_bytes()
    copy = copies_of(tmp_path / "stick", tmp_path)["segment-00000000.ftj"]
    with pytest.raises(InvalidSignature):
        check_copy(original, copy, Ed25519PrivateKey.generate())
