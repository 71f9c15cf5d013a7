"""What a kiosk exported is checked whole: a record missing from it is an alarm, never a notice.

Before export seals, the newest exported segment (the open one) cut at a frame boundary imported
with exit 0 and nothing said, cut inside a frame or with a length byte flipped it became a "torn
tail" notice, exit 0. Now every copy ends with an export seal the kiosk signs over the bytes it
copied: cutting it anywhere or changing any byte is an alarm naming the segment. Old kiosks
(format version 1) made no export seals: their copies still import, with a notice that they cannot
be checked whole. Real kiosk journals, real exports, real station keys throughout.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.journal import writer
from agent.journal.keys import raw_public
from agent.journal.segment_format import header_hash_of, key_id_of_raw, parse_header
from agent.journal.sync import JOURNAL_FOLDER, export_segments
from station import cli as station_cli
from station.findings import Finding
from station.home import StationHome
from station.importer import import_sources
from station.verify import VerifiedSegment, verify_segment
from tests.agent.journal.helpers import frame_spans, make_station, open_journal, run_cli, write_records

SEGMENT_0 = "segment-00000000.ftj"
SEGMENT_1 = "segment-00000001.ftj"
SEAL_BYTES = 1 + 8 + 32 + 64


@dataclass(frozen=True)
class Export:
    home: StationHome
    kiosk: str
    first: bytes  # segment 0 as exported: sealed, 4 records
    open: bytes  # segment 1 as exported while open: 3 records
    sealed: bytes  # segment 1 as exported after the sync's rotate(): 3 records and the seal
    folder: Path  # stick/fieldtriage-journal/KIOSK


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    root = tmp_path_factory.mktemp("kiosk")
    home = make_station(root / "station")
    journal = open_journal(root, home, max_segment_records=4)
    write_records(journal, 7)
    export_segments(root / "journal", root / "stick")
    kiosk = journal.kiosk_id
    folder = root / "stick" / JOURNAL_FOLDER / kiosk
    first, open_copy = (folder / SEGMENT_0).read_bytes(), (folder / SEGMENT_1).read_bytes()
    journal.rotate()  # what a sync stick does before it copies
    export_segments(root / "journal", root / "stick2")
    sealed = (root / "stick2" / JOURNAL_FOLDER / kiosk / SEGMENT_1).read_bytes()
    journal.close()
    return Export(home, kiosk, first, open_copy, sealed, folder)


def verify(export: Export, data: bytes, name: str = SEGMENT_1) -> tuple[list[int], list[Finding]]:
    """(indexes of the records that open, findings) as the station's verification has them."""
    opened, findings = verified_copy(export, data, name)
    return [r.index for r in opened.records] if opened else [], findings


def verified_copy(
    export: Export, data: bytes, name: str = SEGMENT_1
) -> tuple[VerifiedSegment | None, list[Finding]]:
    key = export.home.journal_private_key()
    station_key_id = key_id_of_raw(raw_public(key.public_key()))
    return verify_segment(export.folder / name, data, key, station_key_id, export.kiosk)


def whole(export: Export, data: bytes, name: str = SEGMENT_1) -> tuple[list[int], bool, list[Finding]]:
    """(record indexes, whether the export seal vouches for every byte, findings)."""
    verified, findings = verified_copy(export, data, name)
    assert verified is not None, [f.line() for f in findings]
    return [r.index for r in verified.records], verified.whole, findings


def alarms(findings: list[Finding]) -> list[str]:
    return [f.message for f in findings if f.severity == "alarm"]


def record_spans(export: Export, data: bytes) -> tuple[int, list[tuple[int, int]], tuple[int, int] | None]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / SEGMENT_1
        path.write_bytes(data)
        return frame_spans(path)


def boundaries(export: Export, data: bytes) -> list[int]:
    """Every place a cut leaves whole frames: before and after each, the header's end, the seals."""
    frames_offset, records, seal = record_spans(export, data)
    cuts = {0, 8, 12, frames_offset, *(end for _, end in records), len(data) - SEAL_BYTES}
    if seal is not None:
        cuts |= {seal[0], seal[1]}
    return sorted(c for c in cuts if c < len(data))


def import_stick(export: Export, tmp: Path, newest: bytes) -> tuple[int, str]:
    """``station import`` of a stick holding segment 0 and ``newest`` as segment 1, at a new station."""
    station = tmp / "station"
    shutil.copytree(export.home.folder, station)
    folder = tmp / "stick" / JOURNAL_FOLDER / export.kiosk
    folder.mkdir(parents=True)
    (folder / SEGMENT_0).write_bytes(export.first)
    (folder / SEGMENT_1).write_bytes(newest)
    status, out, _ = run_cli(
        station_cli.register, ["station", "import", "--home", str(station), str(tmp / "stick")]
    )
    return status, out


def test_a_whole_export_verifies_whole(export: Export) -> None:
    assert whole(export, export.first, SEGMENT_0) == ([0, 1, 2, 3], True, [])
    assert whole(export, export.open) == ([0, 1, 2], True, [])
    assert whole(export, export.sealed) == ([0, 1, 2], True, [])


@pytest.mark.parametrize("which", ["open", "sealed"])
def test_truncating_the_newest_segment_at_every_frame_boundary_is_an_alarm(
    export: Export, which: str
) -> None:
    data: bytes = getattr(export, which)
    cuts = boundaries(export, data)
    assert len(cuts) >= 7
    frames_offset, records, _ = record_spans(export, data)
    for cut in cuts:
        opened, findings = verify(export, data[:cut])
        assert alarms(findings), (cut, [f.line() for f in findings])
        before = [i for i, (_, end) in enumerate(records) if end <= cut] if cut >= frames_offset else []
        assert opened == before, cut  # what remains authentic still opens


@pytest.mark.parametrize("which", ["open", "sealed"])
def test_a_flipped_length_byte_is_an_alarm(export: Export, which: str) -> None:
    data: bytes = getattr(export, which)
    _, records, _ = record_spans(export, data)
    for start, _ in records:
        for offset in range(start + 5, start + 9):  # "R" | u32 index | u32 sealed_length
            for mask in (0x01, 0x10, 0x80, 0xFF):
                flipped = bytearray(data)
                flipped[offset] ^= mask
                _, findings = verify(export, bytes(flipped))
                assert alarms(findings), (offset, mask, [f.line() for f in findings])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncating_the_newest_segment_at_any_byte_is_an_alarm(export: Export, data: st.DataObject) -> None:
    copy: bytes = getattr(export, data.draw(st.sampled_from(["open", "sealed"])))
    cut = data.draw(st.integers(0, len(copy) - 1))
    _, findings = verify(export, copy[:cut])
    assert alarms(findings), [f.line() for f in findings]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_changing_any_byte_of_an_export_is_an_alarm(export: Export, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([SEGMENT_0, SEGMENT_1]))
    copy = export.first if name == SEGMENT_0 else export.open
    offset = data.draw(st.integers(0, len(copy) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(copy)
    flipped[offset] ^= mask
    _, findings = verify(export, bytes(flipped), name)
    assert alarms(findings), (offset, mask, [f.line() for f in findings])


def test_the_import_exits_non_zero_and_names_the_segment(export: Export, tmp_path: Path) -> None:
    _, records, _ = record_spans(export, export.open)
    status, out = import_stick(export, tmp_path / "whole", export.open)
    assert "export" not in out, out
    status, out = import_stick(export, tmp_path / "cut", export.open[: records[1][1]])  # record 2 gone
    assert status == 1, out
    assert f"alarm: kiosk {export.kiosk[:8]} segment 1: exported copy ends without its export seal" in out
    flipped = bytearray(export.open)
    flipped[records[1][0] + 8] ^= 0x40  # record 1's length: the rest used to be a "torn tail", exit 0
    status, out = import_stick(export, tmp_path / "flipped", bytes(flipped))
    assert status == 1, out
    assert (
        f"alarm: kiosk {export.kiosk[:8]} segment 1: exported copy differs from what the kiosk exported"
        in out
    )


def test_a_seal_made_by_another_key_after_a_cut_is_an_alarm(export: Export) -> None:
    """Cutting records off and sealing the rest anew needs the kiosk's key."""
    _, records, _ = record_spans(export, export.open)
    cut = export.open[: records[1][1]]
    header = parse_header(memoryview(cut))
    digest = blake3.blake3(cut).digest()
    message = b"fieldtriage journal export seal v1\x00" + header_hash_of(header.raw)
    message += len(cut).to_bytes(8, "big") + digest
    forged = cut + b"E" + len(cut).to_bytes(8, "big") + digest + Ed25519PrivateKey.generate().sign(message)
    _, findings = verify(export, forged)
    assert any("export seal at offset" in m and "signature" in m for m in alarms(findings))


def test_a_kiosk_journal_folder_imported_directly_is_read_as_before(export: Export, tmp_path: Path) -> None:
    """A kiosk's own folder (its card at the station) holds no export seals: nothing new is said."""
    key = export.home.journal_private_key()
    raw = export.open[:-SEAL_BYTES]  # the kiosk's file as it was
    verified, findings = verify_segment(
        tmp_path / "journal" / SEGMENT_1, raw, key, key_id_of_raw(raw_public(key.public_key())), None
    )
    assert verified is not None and [r.index for r in verified.records] == [0, 1, 2] and findings == []


def test_an_old_kiosk_export_without_export_seals_still_imports_with_a_notice(tmp_path: Path) -> None:
    """A kiosk of format version 1 copied its files verbatim: every record imports; the open
    segment, which no seal closes, is said to be uncheckable whole (a notice, not an alarm)."""
    home = make_station(tmp_path / "station")
    with mock.patch.object(writer, "FORMAT_VERSION", 1):
        journal = open_journal(tmp_path, home, max_segment_records=4)
        write_records(journal, 7)
    folder = tmp_path / "stick" / JOURNAL_FOLDER / journal.kiosk_id
    folder.mkdir(parents=True)
    for name in (SEGMENT_0, SEGMENT_1):
        shutil.copyfile(tmp_path / "journal" / name, folder / name)  # what the old export did
    journal.close()
    old = Export(home, journal.kiosk_id, (folder / SEGMENT_0).read_bytes(), b"", b"", folder)
    assert parse_header(memoryview(old.first)).format_version == 1
    assert verify(old, old.first, SEGMENT_0) == ([0, 1, 2, 3], [])
    opened, findings = verify(old, (folder / SEGMENT_1).read_bytes())
    assert opened == [0, 1, 2]
    assert [(f.severity, f.segment) for f in findings] == [("notice", 1)]
    assert "cannot be checked whole" in findings[0].message
    summary = import_sources(home, [tmp_path / "stick"])
    assert summary.records_new == 7
    assert not [f.line() for f in summary.findings if f.severity == "alarm" and "export" in f.message]
