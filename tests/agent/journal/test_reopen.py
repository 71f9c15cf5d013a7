"""Reopening a journal whose last segment a crash, a power cut or a full disk left damaged.

What a power cut (or SIGKILL, or a full disk) can leave is set aside and writing goes on: the new
segment's header records how the previous one ended, its bytes stay on disk for the station, and
every record acknowledged before still imports. What no power cut can produce (a segment signed
by another key, a file that is not a segment) is a one-line JournalError naming the file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agent.journal import writer
from agent.journal.segment_format import header_hash_of, parse_header
from agent.journal.tail import read_tail, segment_files
from filters.errors import JournalError
from station.home import StationHome
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import frame_spans, make_station, open_journal, write_records


def crash(journal: writer.EncryptedJournal) -> None:
    """What SIGKILL leaves: no seal, descriptors gone (the lock with them)."""
    if journal._segment is not None:
        os.close(journal._segment.fd)
        journal._segment = None
    assert journal._lock_fd is not None
    os.close(journal._lock_fd)
    journal._lock_fd = None


def last_segment(folder: Path) -> Path:
    return segment_files(folder / "journal")[-1][1]


def stored_numbers(home: StationHome) -> list[int]:
    store = Store.open(home.database_path)
    try:
        bodies = [body_from_json(b) for (b,) in store.query("SELECT body FROM records")]
    finally:
        store.close()
    return sorted(int(b["n"]) for b in bodies if b.get("type") == "test")


def alarms(home: StationHome, folder: Path) -> list[str]:
    summary = import_sources(home, [folder / "journal"])
    return [f.line() for f in summary.findings if f.severity == "alarm"]


def preamble_only(tmp_path: Path, home: StationHome) -> Path:
    """Records 0-2 in segment 0, then a crash right after segment 1 was created."""
    journal = open_journal(tmp_path, home)
    write_records(journal, 3)
    journal.rotate()
    journal._segment = journal._start_segment()
    crash(journal)
    path = last_segment(tmp_path)
    assert path.name == "segment-00000001.ftj"
    return path


def test_reopen_after_a_crash_right_after_a_segment_was_created(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    path = preamble_only(tmp_path, home)
    before = path.read_bytes()
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=3)
    assert path.read_bytes() == before, "the set-aside segment is never rewritten"
    header = parse_header(memoryview(last_segment(tmp_path).read_bytes()))
    first = parse_header(memoryview(before))
    assert header.number == 2
    assert (header.previous_records, header.previous_sealed, header.previous_torn_bytes) == (0, False, 0)
    assert header.previous_chain == header_hash_of(first.raw)
    assert alarms(home, tmp_path) == []
    assert stored_numbers(home) == [0, 1, 2, 3]


def test_reopen_after_the_first_frame_of_a_segment_was_torn_at_every_offset(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 2)
    journal.rotate()
    write_records(journal, 1, start=2)  # segment 1, record 0: the frame we tear
    crash(journal)
    path = last_segment(tmp_path)
    data = path.read_bytes()
    frames_offset, records, _ = frame_spans(path)
    [(start, end)] = records
    assert start == frames_offset
    public = writer.load_or_create_device_key(tmp_path / "device.key").public_key()
    for cut in range(start + 1, end):
        path.write_bytes(data[:cut])
        tail = read_tail(tmp_path / "journal", public)
        assert (tail.next_number, tail.previous_records, tail.previous_sealed) == (2, 0, False), cut
        assert tail.previous_torn_bytes == cut - frames_offset, cut
    path.write_bytes(data[: start + 5])
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=3)
    header = parse_header(memoryview(last_segment(tmp_path).read_bytes()))
    assert (header.number, header.previous_torn_bytes) == (2, 5)
    assert alarms(home, tmp_path) == []
    assert stored_numbers(home) == [0, 1, 3]  # record 2 was never acknowledged: its write was cut


def test_reopen_after_a_zero_filled_tail(tmp_path: Path) -> None:
    """A power cut can leave a file longer than what reached the disk: zeros at the end."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 4)
    crash(journal)
    path = last_segment(tmp_path)
    with path.open("ab") as f:
        f.write(bytes(4096))
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=4)
    header = parse_header(memoryview(last_segment(tmp_path).read_bytes()))
    assert (header.number, header.previous_records, header.previous_torn_bytes) == (1, 4, 4096)
    import_sources(home, [tmp_path / "journal"])
    assert stored_numbers(home) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "damage",
    ["empty", "zeros", "magic only", "cut in the header", "header then zeros", "cut in the signature"],
)
def test_a_segment_cut_short_while_it_was_created_is_set_aside(tmp_path: Path, damage: str) -> None:
    """The preamble goes to a temporary file, fsync, rename: a disk that reorders writes anyway (or
    a filesystem without ordering) can still leave the new name on fewer bytes, or on zeros."""
    home = make_station(tmp_path / "station")
    path = preamble_only(tmp_path, home)
    preamble = path.read_bytes()
    cut = {
        "empty": b"",
        "zeros": bytes(4096),
        "magic only": preamble[:8],
        "cut in the header": preamble[:40],
        "header then zeros": preamble[:40] + bytes(4096 - 40),
        "cut in the signature": preamble[:-10],
    }[damage]
    path.write_bytes(cut)
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=3)
    assert path.read_bytes() == cut, "kept for the station as it was"
    header = parse_header(memoryview(last_segment(tmp_path).read_bytes()))
    assert header.number == 2
    assert (header.previous_records, header.previous_sealed, header.previous_torn_bytes) == (
        0,
        False,
        len(cut),
    )
    # reopening again continues after the new segment, not the damaged one
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=4)
    assert last_segment(tmp_path).name == "segment-00000003.ftj"
    import_sources(home, [tmp_path / "journal"])
    assert stored_numbers(home) == [0, 1, 2, 3, 4]


def test_a_segment_signed_by_another_key_is_a_one_line_error(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    (tmp_path / "device.key").rename(tmp_path / "other.key")
    (tmp_path / "device.pub").unlink(missing_ok=True)
    with pytest.raises(JournalError) as raised:
        open_journal(tmp_path, home)
    message = str(raised.value)
    assert "\n" not in message and "segment-00000000.ftj" in message
    assert "another device key" in message
    # the lock was let go: the same process can try again (and gets the same answer)
    with pytest.raises(JournalError, match="another device key"):
        open_journal(tmp_path, home)


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04 not a segment at all" + bytes(100), b"FTJSEG\x00\x01" + b"\xff" * 200],
)
def test_a_file_no_power_cut_can_make_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    stranger = tmp_path / "journal" / "segment-00000001.ftj"
    stranger.write_bytes(content)
    with pytest.raises(JournalError) as raised:
        open_journal(tmp_path, home)
    assert "\n" not in str(raised.value) and "segment-00000001.ftj" in str(raised.value)
    assert stranger.read_bytes() == content


def test_a_segment_name_that_is_not_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1)
    os.mkfifo(tmp_path / "journal" / "segment-00000001.ftj")  # reading it would wait forever
    with pytest.raises(JournalError, match=r"segment-00000001\.ftj: not a regular file"):
        open_journal(tmp_path, home)


def test_the_folder_lock_is_let_go_whatever_stops_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_station(tmp_path / "station")

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(writer, "read_tail", broken)
    with pytest.raises(RuntimeError):
        open_journal(tmp_path, home)
    monkeypatch.undo()
    open_journal(tmp_path, home).close()  # not "in use by another process"


def test_disk_full_while_a_segment_is_created_leaves_no_short_preamble(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``write`` on a nearly full disk writes what fits and says so; only the next one fails."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 2)
    journal.rotate()
    real_write = os.write
    calls = []

    def nearly_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:20])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", nearly_full)
    with pytest.raises(JournalError, match="No space left on device"):
        journal.append({"type": "lost"})
    monkeypatch.setattr(os, "write", real_write)
    assert [n for n, _ in segment_files(tmp_path / "journal")] == [0], "no short segment in place"
    crash(journal)
    with open_journal(tmp_path, home) as journal:
        write_records(journal, 1, start=2)
    assert alarms(home, tmp_path) == []
    assert stored_numbers(home) == [0, 1, 2]


def test_a_segment_name_that_reached_the_folder_is_never_used_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed into place, then the folder's fsync fails: a sync may already have copied that file,
    so the next segment takes the next number instead of replacing it."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 2)
    journal.rotate()
    real_fsync_folder = writer.fsync_folder

    def failing(folder: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(writer, "fsync_folder", failing)
    with pytest.raises(JournalError, match="Input/output error"):
        journal.append({"type": "lost"})
    monkeypatch.setattr(writer, "fsync_folder", real_fsync_folder)
    placed = tmp_path / "journal" / "segment-00000001.ftj"
    before = placed.read_bytes()
    write_records(journal, 1, start=2)
    journal.close()
    assert placed.read_bytes() == before
    header = parse_header(memoryview(last_segment(tmp_path).read_bytes()))
    assert header.number == 2 and header.previous_chain == header_hash_of(
        parse_header(memoryview(before)).raw
    )
    assert alarms(home, tmp_path) == []
    assert stored_numbers(home) == [0, 1, 2]
