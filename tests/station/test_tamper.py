"""Every alteration of a journal is reported with the segment and record it concerns."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.journal.keys import raw_public
from agent.journal.segment_format import RECORD_TYPE, key_id_of_raw
from station.findings import Finding
from station.home import StationHome
from station.importer import import_sources
from station.store import Store
from station.verify import verify_segment
from tests.agent.journal.helpers import frame_spans, make_station, open_journal, write_records

SEGMENT_1 = "segment-00000001.ftj"


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory: pytest.TempPathFactory) -> tuple[StationHome, Path]:
    """A station and a journal: segments 0 and 1 sealed (4 records each), 2 cut short (3 records)."""
    root = tmp_path_factory.mktemp("kiosk")
    home = make_station(root / "station")
    with open_journal(root, home, max_segment_records=4) as journal:
        write_records(journal, 8)
    journal = open_journal(root, home, max_segment_records=4)
    write_records(journal, 3, start=8)
    journal._segment = None  # a power cut: the open segment is never sealed
    return home, root / "journal"


def copy_journal(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def verify(home: StationHome, path: Path, data: bytes) -> tuple[list[int], list[Finding]]:
    key = home.journal_private_key()
    verified, findings = verify_segment(path, data, key, key_id_of_raw(raw_public(key.public_key())), None)
    return ([r.index for r in verified.records] if verified else []), findings


def messages(findings: list[Finding]) -> list[tuple[int | None, int | None, str]]:
    return [(f.segment, f.record, f.message) for f in findings if f.severity != "notice"]


def test_a_flipped_bit_anywhere_names_the_segment_and_record(kiosk: tuple[StationHome, Path]) -> None:
    home, journal = kiosk
    path = journal / SEGMENT_1
    original = path.read_bytes()
    frames_offset, records, seal = frame_spans(path)
    assert seal is not None and len(records) == 4
    for offset in range(len(original)):
        flipped = bytearray(original)
        flipped[offset] ^= 0x01
        opened, findings = verify(home, path, bytes(flipped))
        assert findings, f"offset {offset}: nothing reported"
        if offset < frames_offset:
            assert opened == [] and all(f.record is None and f.segment == 1 for f in findings), offset
            continue
        frame = next((k for k, (start, end) in enumerate(records) if start <= offset < end), None)
        if frame is None:  # in the seal: every record still opens
            assert opened == [0, 1, 2, 3], offset
            if bytes(flipped[offset : offset + 1]) == RECORD_TYPE:
                # "S" became "R": the seal reads as a record frame whose length is the chain's first
                # bytes; in range, it looks like a write cut short (the next segment's header says
                # it was sealed: test_a_damaged_seal_is_a_warning_until_a_sealed_copy_arrives)
                assert any("incomplete frame" in f.message or "seal" in f.message for f in findings)
            else:
                assert any("seal" in f.message for f in findings), offset
            continue
        assert any(f.record == frame for f in findings), (offset, frame, [f.line() for f in findings])
        assert opened[:frame] == list(range(frame)) and frame not in opened, offset


def test_truncation_at_every_offset_of_the_last_record_keeps_every_earlier_one(
    kiosk: tuple[StationHome, Path],
) -> None:
    home, journal = kiosk
    path = journal / "segment-00000002.ftj"
    data = path.read_bytes()
    _, records, seal = frame_spans(path)
    assert seal is None and len(records) == 3
    start, end = records[-1]
    for cut in range(start, end):
        opened, findings = verify(home, path, data[:cut])
        assert opened == [0, 1], cut
        assert messages(findings) == [], cut
        torn = [f for f in findings if f.severity == "notice"]
        assert (cut == start and torn == []) or (torn and torn[0].record == 2), cut


def test_clean_import_then_reimport_changes_nothing(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    home, journal = kiosk
    station = StationHome(tmp_path / "station")
    shutil.copytree(home.folder, station.folder)
    first = import_sources(station, [journal])
    assert first.records_new == 11 and messages(first.findings) == []
    dump = list(sqlite3.connect(station.database_path).iterdump())
    second = import_sources(station, [journal, journal / SEGMENT_1])
    assert second.records_new == 0 and second.records_known == 11 and second.new_findings == []
    assert list(sqlite3.connect(station.database_path).iterdump()) == dump


def import_altered(
    kiosk: tuple[StationHome, Path], tmp_path: Path, alter: Callable[[Path], object]
) -> list[tuple[int | None, int | None, str]]:
    home, journal = kiosk
    station = StationHome(tmp_path / "station")
    shutil.copytree(home.folder, station.folder)
    copy = copy_journal(journal, tmp_path / "journal")
    alter(copy)
    return [(f.segment, f.record, f.message) for f in import_sources(station, [copy]).findings]


def rewrite_frames(path: Path, order: list[int]) -> None:
    data = path.read_bytes()
    frames_offset, records, seal = frame_spans(path)
    body = b"".join(data[records[i][0] : records[i][1]] for i in order)
    path.write_bytes(data[:frames_offset] + body + (data[seal[0] : seal[1]] if seal else b""))


def test_dropped_record(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    found = import_altered(kiosk, tmp_path, lambda j: rewrite_frames(j / SEGMENT_1, [0, 2, 3]))
    assert (1, 1, "record 1 missing (in the chain)") in found


def test_reordered_records(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    found = import_altered(kiosk, tmp_path, lambda j: rewrite_frames(j / SEGMENT_1, [0, 2, 1, 3]))
    assert (1, 1, "appears after record 2 (out of order)") in found


def test_duplicated_record(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    found = import_altered(kiosk, tmp_path, lambda j: rewrite_frames(j / SEGMENT_1, [0, 1, 1, 2, 3]))
    assert any(f[:2] == (1, 1) and "second copy" in str(f[2]) for f in found)


def test_last_records_of_a_sealed_segment_removed(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    def cut(journal: Path) -> None:
        _, records, _ = frame_spans(journal / SEGMENT_1)
        data = (journal / SEGMENT_1).read_bytes()
        (journal / SEGMENT_1).write_bytes(data[: records[2][1]])  # record 3 and the seal gone

    found = import_altered(kiosk, tmp_path, cut)
    assert (1, None, "1 of its 4 records missing (segment 2 says it had 4)") in found


def seal_as_torn_record(data: bytes, seal_at: int) -> bytes:
    """The seal's "S" made "R" and the chain's first bytes a record length in range: the seal reads
    as a record frame cut short (what one flipped bit does for about 1 key in 500)."""
    forged = bytearray(data)
    forged[seal_at : seal_at + 1] = RECORD_TYPE
    forged[seal_at + 5 : seal_at + 9] = (200).to_bytes(4, "big")
    return bytes(forged)


@pytest.mark.parametrize("damage", ["last byte cut", "seal read as a torn record"])
def test_a_damaged_seal_is_a_warning_until_a_sealed_copy_arrives(
    kiosk: tuple[StationHome, Path], tmp_path: Path, damage: str
) -> None:
    home, journal = kiosk
    station = StationHome(tmp_path / "station")
    shutil.copytree(home.folder, station.folder)
    damaged = copy_journal(journal, tmp_path / "damaged")
    data = (damaged / SEGMENT_1).read_bytes()
    _, _, seal = frame_spans(damaged / SEGMENT_1)
    assert seal is not None
    altered = data[:-1] if damage == "last byte cut" else seal_as_torn_record(data, seal[0])
    (damaged / SEGMENT_1).write_bytes(altered)
    warning = (1, None, "no valid seal in the copy imported (segment 2 says it was sealed)")
    found = [(f.segment, f.record, f.message) for f in import_sources(station, [damaged]).findings]
    assert warning in found
    import_sources(station, [journal / SEGMENT_1])  # the intact copy: the warning is withdrawn
    store = Store.open(station.database_path)
    try:
        left = [m for (m,) in store.query("SELECT message FROM findings WHERE segment = 1")]
    finally:
        store.close()
    assert warning[2] not in left, left


def test_dropped_segment(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    found = import_altered(kiosk, tmp_path, lambda j: (j / SEGMENT_1).unlink())
    assert (1, None, "segment missing (segment 2 follows it)") in found


def test_reordered_segments(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    def swap(journal: Path) -> None:
        (journal / SEGMENT_1).rename(journal / "x")
        (journal / "segment-00000002.ftj").rename(journal / SEGMENT_1)
        (journal / "x").rename(journal / "segment-00000002.ftj")

    found = import_altered(kiosk, tmp_path, swap)
    assert (1, None, "file name says segment 2 (segments renamed or reordered)") in found
    assert (2, None, "file name says segment 1 (segments renamed or reordered)") in found


def test_segment_from_another_kiosk(kiosk: tuple[StationHome, Path], tmp_path: Path) -> None:
    home, journal = kiosk
    other_root = tmp_path / "other-kiosk"
    with open_journal(other_root, home, max_segment_records=4) as other:
        write_records(other, 8)
    ours = parse_kiosk_id(journal)
    theirs = parse_kiosk_id(other_root / "journal")
    folder = tmp_path / "stick" / ours  # the export layout names the kiosk
    copy_journal(journal, folder)
    shutil.copy(other_root / "journal" / SEGMENT_1, folder / SEGMENT_1)
    station = StationHome(tmp_path / "station")
    shutil.copytree(home.folder, station.folder)
    found = [(f.kiosk, f.segment, f.message) for f in import_sources(station, [tmp_path / "stick"]).findings]
    assert (theirs, 1, f"written by kiosk {theirs}, not by kiosk {ours} whose folder holds it") in found
    assert (ours, 1, "segment missing (segment 2 follows it)") in found


def parse_kiosk_id(journal: Path) -> str:
    from agent.journal.segment_format import parse_header

    return parse_header(memoryview((journal / "segment-00000000.ftj").read_bytes())).kiosk_id
