"""Power cuts for real: a writer process SIGKILLed at random points, and a disk that fills up.

Every record whose ``append`` returned must reach the station, every reopen must succeed, and no
process may die of a traceback. The kill loop is tests/agent/journal/power_cut.py (its 1,000-kill
run is bench/soak_journal.py).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from agent.journal import EncryptedJournal
from agent.journal.segment_format import parse_header
from agent.journal.sync import export_segments
from agent.journal.tail import segment_files
from filters.errors import JournalError
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import enroll, make_station
from tests.agent.journal.power_cut import run_driver
from tests.agent.journal.small_disk import fill, small_filesystem

KILLS = 200


def imported_ids(database: Path) -> set[str]:
    store = Store.open(database)
    try:
        return {str(body_from_json(b).get("id")) for (b,) in store.query("SELECT body FROM records")}
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_at_200_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """10 rounds of 20 kills; after each round the journal is reopened (and appended to), exported
    onto the stick and imported at the station, which must hold every record acknowledged so far."""
    home = make_station(tmp_path / "station")
    journal = tmp_path / "journal"
    enrolled = False
    acknowledged: list[str] = []
    kills = 0
    for round_ in range(KILLS // 20):
        run = run_driver(journal, tmp_path / "device.key", home.journal_public_path, 20, seed=11 + round_)
        assert run.reopen_failures == [] and run.unexpected_exits == [], (round_, run)
        kills += run.kills
        acknowledged += run.acknowledged
        export_segments(journal, tmp_path / "stick")
        if not enrolled:
            enroll(home, tmp_path / "device.key")
            enrolled = True
        summary = import_sources(home, [tmp_path / "stick"])
        assert [f.line() for f in summary.findings if f.severity == "alarm"] == [], round_
        missing = set(acknowledged) - imported_ids(home.database_path)
        assert not missing, (
            f"round {round_}: {len(missing)} acknowledged records missing, e.g. {sorted(missing)[:5]}"
        )
    assert kills == KILLS
    assert len(acknowledged) > KILLS, "the writers did get going"
    runs = Counter(record_id.split("-")[0] for record_id in acknowledged if record_id != "final")
    assert len(runs) > KILLS // 5, "many kills landed after some records"
    assert len(runs) < KILLS - KILLS // 10, "some kills landed before the first record was done"


@pytest.mark.root
def test_a_full_disk_then_space_freed_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """A 4 MiB tmpfs filled up again and again (0 to 3 pages left) while records are appended:
    appends fail while a segment is created, inside its first frame (a segment left with its
    preamble only), inside later frames or a seal; the journal is reopened while the disk is still
    full, then space is freed and writing goes on."""
    home = make_station(tmp_path / "station")
    rng = random.Random(3)
    acknowledged: list[str] = []
    failures = 0

    def append(journal: EncryptedJournal, record_id: str, large: bool = False) -> bool:
        pad = b"x" * (12_000 if large else rng.choice((0, 300, 2000, 5000, 12_000)))
        try:
            journal.append({"type": "load", "id": record_id, "pad": pad})
        except JournalError as err:
            assert "No space left on device" in str(err) and "\n" not in str(err)
            assert not journal.healthy and journal.last_error is err
            return False
        acknowledged.append(record_id)
        return True

    with small_filesystem(tmp_path / "disk") as disk:
        folder = disk / "journal"
        options = {"max_segment_records": 15}
        journal = EncryptedJournal.open(folder, tmp_path / "device.key", home.journal_public_path, **options)
        for round_ in range(12):
            with contextlib.suppress(JournalError):
                journal.rotate()  # this round's first record starts a segment
            filler = fill(disk, f"filler-{round_}")
            os.truncate(filler, max(0, filler.stat().st_size - (round_ % 4) * 4096))  # 0-3 pages free
            failed = sum(not append(journal, f"{round_}-{i}", i == 0) for i in range(30))
            assert failed, "the disk was full"
            failures += failed
            if round_ % 2:  # restart on the full disk: the seal may not fit, the open must work
                with contextlib.suppress(JournalError):
                    journal.close()
                journal = EncryptedJournal.open(
                    folder, tmp_path / "device.key", home.journal_public_path, **options
                )
                assert not append(journal, f"{round_}-still-full")
            filler.unlink()
            assert append(journal, f"{round_}-freed"), "writing goes on once space is freed"
            assert journal.healthy
        journal.close()
        for _, path in segment_files(folder):
            parse_header(memoryview(path.read_bytes()))  # no short preamble was ever put in place
        export_segments(folder, tmp_path / "stick")
    enroll(home, tmp_path / "device.key")
    summary = import_sources(home, [tmp_path / "stick"])
    assert [f.line() for f in summary.findings if f.severity == "alarm"] == []
    assert failures > 100
    missing = set(acknowledged) - imported_ids(home.database_path)
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:5]}"
