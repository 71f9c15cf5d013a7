from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from agent.journal import EncryptedJournal, Journal, PlainJournal
from agent.journal.clock import ClockReader
from agent.journal.segment_format import parse_header
from agent.journal.tail import segment_files
from filters.errors import JournalError
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import make_station, open_journal, write_records


def stored_records(home_folder: Path) -> list[dict[str, object]]:
    store = Store.open(home_folder / "station.sqlite")
    return [body_from_json(b) for (b,) in store.query("SELECT body FROM records ORDER BY segment, idx")]


def test_records_round_trip_with_time_fields_and_every_value_type(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    clock = ClockReader(boot_id="boot-1", synchronised=lambda: False)
    record = {
        "type": "t",
        "s": "päth\x00",
        "i": -3,
        "f": 1.5,
        "b": True,
        "n": None,
        "l": [1, (2,)],
        "d": {"x": b"\x00\xff"},
    }
    with open_journal(tmp_path, home, clock=clock) as journal:
        journal.append(record)
    summary = import_sources(home, [tmp_path / "journal"])
    assert summary.records_new == 1
    [body] = stored_records(home.folder)
    time_fields = body.pop("time")
    assert body == {**record, "l": [1, [2]]}
    assert isinstance(time_fields, dict)
    assert time_fields["boot_id"] == "boot-1" and time_fields["clock_synchronised"] is False
    assert time_fields["wall_ns"] > 0 and time_fields["monotonic_ns"] > 0


def test_device_key_created_once_private_0600(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    open_journal(tmp_path, home).close()
    assert stat.S_IMODE((tmp_path / "device.key").stat().st_mode) == 0o600
    before = (tmp_path / "device.key").read_bytes()
    open_journal(tmp_path, home).close()
    assert (tmp_path / "device.key").read_bytes() == before


def test_rotation_and_restart_continue_numbering_and_chain(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home, max_segment_records=4) as journal:
        write_records(journal, 10)
    journal = open_journal(tmp_path, home, max_segment_records=4)
    write_records(journal, 3, start=10)
    os.close(journal._segment.fd)  # type: ignore[union-attr]  # a crash: no seal
    journal._segment = None
    os.close(journal._lock_fd)  # type: ignore[arg-type]
    with open_journal(tmp_path, home, max_segment_records=4) as journal:
        write_records(journal, 1, start=13)
    numbers = [n for n, _ in segment_files(tmp_path / "journal")]
    assert numbers == [0, 1, 2, 3, 4]
    last = parse_header(memoryview((tmp_path / "journal" / "segment-00000004.ftj").read_bytes()))
    assert (last.previous_records, last.previous_sealed) == (3, False)
    summary = import_sources(home, [tmp_path / "journal"])
    assert summary.records_new == 14
    assert [f.severity for f in summary.findings if f.severity != "notice"] == []
    assert [b["n"] for b in stored_records(home.folder)] == list(range(14))


def test_rotation_by_size(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home, max_segment_bytes=2000) as journal:
        for _ in range(10):
            journal.append({"type": "big", "pad": "x" * 600})
    assert len(segment_files(tmp_path / "journal")) >= 4


def test_caller_errors_do_not_make_the_journal_unhealthy(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        with pytest.raises(JournalError, match="reserved"):
            journal.append({"time": 1})
        with pytest.raises(JournalError, match=r"record\.x: unsupported value type set"):
            journal.append({"x": {1}})
        assert journal.healthy and journal.last_error is None
    with pytest.raises(JournalError, match="closed"):
        journal.append({"type": "late"})


def test_disk_full_is_a_fault_signal_and_a_new_segment_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 2)
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:7])  # a partial frame reaches the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(JournalError, match="No space left on device"):
        journal.append({"type": "lost"})
    assert not journal.healthy and journal.last_error is not None
    monkeypatch.setattr(os, "write", real_write)
    journal.append({"type": "after"})
    assert journal.healthy
    journal.close()
    summary = import_sources(home, [tmp_path / "journal"])
    assert summary.records_new == 3
    assert not [f for f in summary.findings if f.severity == "alarm"]


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home), pytest.raises(JournalError, match="in use"):
        open_journal(tmp_path, home)


def test_unusable_keys_are_one_line_errors(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with pytest.raises(Exception, match="not an X25519 public key"):
        EncryptedJournal.open(tmp_path / "j", tmp_path / "device.key", home.signing_public_path)
    with pytest.raises(Exception, match="cannot read"):
        EncryptedJournal.open(tmp_path / "j", tmp_path / "device.key", tmp_path / "missing.pub")
    with pytest.raises(Exception, match=r"must end in \.key"):
        EncryptedJournal.open(tmp_path / "j", tmp_path / "device.pem", home.journal_public_path)


def test_both_journals_satisfy_the_protocol(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journals: list[Journal] = [open_journal(tmp_path, home), PlainJournal.open(tmp_path / "plain")]
    for journal in journals:
        journal.append({"type": "x"})
        assert journal.healthy and journal.last_error is None
        journal.close()
