"""kill -9 during heavy journaling loses nothing that append() reported done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import enroll, make_station

WRITER = textwrap.dedent(
    """
    import sys
    from agent.journal import EncryptedJournal
    journal = EncryptedJournal.open(sys.argv[1], sys.argv[2], sys.argv[3], max_segment_records=50)
    index = 0
    while True:
        journal.append({"type": "load", "n": index, "pad": "p" * (index % 300)})
        print(index, flush=True)
        index += 1
    """
)


def test_kill_9_loses_nothing_reported_done(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    root = Path(__file__).resolve().parents[3]
    command = [
        sys.executable,
        "-c",
        WRITER,
        str(tmp_path / "journal"),
        str(tmp_path / "device.key"),
        str(home.journal_public_path),
    ]
    writer = subprocess.Popen(
        command, stdout=subprocess.PIPE, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )
    assert writer.stdout is not None
    reported: list[int] = []
    deadline = time.monotonic() + 20
    while len(reported) < 300 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    os.kill(writer.pid, signal.SIGKILL)
    reported.extend(int(line) for line in writer.stdout.read().split())  # printed before the kill landed
    writer.wait()
    assert len(reported) >= 100, "the writer did not get going"
    enroll(home, tmp_path / "device.key")
    summary = import_sources(home, [tmp_path / "journal"])
    assert not [f for f in summary.findings if f.severity == "alarm"], [f.line() for f in summary.findings]
    store = Store.open(home.database_path)
    stored = {body_from_json(b)["n"] for (b,) in store.query("SELECT body FROM records")}
    assert set(reported) <= stored
