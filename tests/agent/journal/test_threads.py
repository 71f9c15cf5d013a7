"""The daemon appends from every bay's thread and its main thread at once: one journal, no race."""

from __future__ import annotations

import threading
from pathlib import Path

from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import make_station, open_journal


def test_appends_from_several_threads_each_get_their_own_index(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home, max_segment_records=37)
    start = threading.Barrier(4)

    def bay(name: str) -> None:
        start.wait()
        for n in range(60):
            journal.append({"type": "test", "bay": name, "n": n})

    threads = [threading.Thread(target=bay, args=(f"bay{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    summary = import_sources(home, [tmp_path / "journal"])
    assert [f.line() for f in summary.findings if f.severity != "notice"] == []
    store = Store.open(home.database_path)
    bodies = [body_from_json(b) for (b,) in store.query("SELECT body FROM records")]
    store.close()
    assert sorted((b["bay"], b["n"]) for b in bodies) == sorted(
        (f"bay{i}", n) for i in range(4) for n in range(60)
    )
