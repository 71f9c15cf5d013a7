"""The daemon with its journal on a real full disk: real udevd, loop devices, mounts, mock pins.

A verdict whose record cannot be written is never shown (a priority match stays red, with amber
steady beside it); a device that arrives while the journal cannot be written is refused; once
space is freed, the next device finds the journal writable again and is scanned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.daemon.status import read_status
from agent.journal import EncryptedJournal
from agent.journal.sync import export_segments
from filters.errors import JournalError
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import enroll, make_station
from tests.agent.journal.small_disk import fill, small_filesystem

from .test_daemon import PINS, Kiosk, filler, image, kiosk_factory, known

pytestmark = [pytest.mark.root, pytest.mark.udev]
__all__ = ["kiosk_factory", "known"]  # fixtures, used by name


@pytest.fixture
def journal_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the journal; requested before ``kiosk_factory``, so unmounted after the
    kiosk has stopped."""
    with small_filesystem(tmp_path / "journal-disk") as disk:
        yield disk


def test_a_full_journal_disk_never_shows_an_unjournaled_verdict_and_recovers_once_freed(
    journal_disk: Path, kiosk_factory: Callable[..., Kiosk], known: dict[str, bytes], tmp_path: Path
) -> None:
    home = make_station(tmp_path / "station")
    folder = journal_disk / "journal"
    journal = EncryptedJournal.open(folder, tmp_path / "device.key", home.journal_public_path)

    def health() -> str | None:
        return None if journal.healthy else f"journal: {journal.last_error}"

    kiosk = kiosk_factory(with_filter=known, journal=journal, journal_health=health)
    status_path = kiosk.root / "run" / "status.json"
    green = kiosk.factory.pin(PINS["front"][2])
    space = fill(journal_disk)
    with contextlib.suppress(JournalError):
        journal.rotate()  # the next record needs a new segment file: no block for it

    # a known device: the scan finds it, its record cannot be written: red, and amber steady
    loop = kiosk.plug(image(tmp_path, {"DCIM/a.jpg": known["known_0.jpg"]}, "full-known"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "priority_match"
    assert kiosk.bay().lights.shown[-2:] == ["scanning_priority_hit", "priority_match_unrecorded"]
    kiosk.wait(lambda: kiosk.pins() == (True, True, False))
    kiosk.wait(lambda: "No space left on device" in str(read_status(status_path)["bays"][0]["problem"]))
    assert "No space left on device" in str(read_status(status_path)["journal"]["error"])
    kiosk.unplug(loop)
    kiosk.wait(lambda: kiosk.bay().device is None and kiosk.bay().lights.signal.value == "fault")

    # a clean device while the disk is still full: refused (fault), never green
    loop = kiosk.plug(image(tmp_path, filler(5, 10_000), "full-clean"))
    kiosk.wait(lambda: kiosk.bay().phase == "not scanned")
    assert kiosk.bay().verdict is None and kiosk.bay().lights.signal.value == "fault"
    kiosk.wait(lambda: "No space left on device" in str(read_status(status_path)["bays"][0]["problem"]))
    states = green.states  # a mock pin's timestamps are the times since its previous change
    assert not states[-1].state
    assert all(states[i + 1].timestamp < 0.2 for i in range(len(states) - 1) if states[i].state)
    kiosk.unplug(loop)

    # space freed: the next device finds the journal writable again and is scanned
    space.unlink()
    loop = kiosk.plug(image(tmp_path, filler(5, 10_000), "freed-clean"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "no_match" and kiosk.bay().lights.signal.value == "no_match"
    kiosk.wait(lambda: kiosk.pins() == (False, False, True))
    assert journal.healthy

    export_segments(folder, tmp_path / "stick")  # the open segment as far as written
    enroll(home, tmp_path / "device.key")
    summary = import_sources(home, [tmp_path / "stick"])
    assert [f.line() for f in summary.findings if f.severity == "alarm"] == []
    store = Store.open(home.database_path)
    bodies = [body_from_json(b) for (b,) in store.query("SELECT body FROM records ORDER BY segment, idx")]
    store.close()
    kinds = [b["type"] for b in bodies]
    assert kinds == ["filters", "journal_recovered", "scan"], kinds
    assert "No space left on device" in str(bodies[1]["after"])
    assert bodies[2]["verdict"] == "no_match" and bodies[2]["lights_shown"] == ["scanning", "no_match"]
