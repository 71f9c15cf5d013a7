"""A journal folder the kiosk cannot open at start (a segment another key signed): the daemon does
not die dark. It runs with every bay on the fault signal, ``agent status`` says why, a device is
refused, and once the folder is mended the next device is scanned, without a restart."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.daemon.cli import open_journal
from agent.daemon.status import read_status
from agent.journal.reopening import ReopeningJournal
from filters.errors import JournalLocked
from tests.agent.journal.helpers import make_station, write_records
from tests.agent.journal.helpers import open_journal as open_test_journal

from .test_daemon import Kiosk, filler, image, kiosk_factory, known

pytestmark = [pytest.mark.root, pytest.mark.udev]
__all__ = ["kiosk_factory", "known"]  # fixtures, used by name


def foreign_journal(tmp_path: Path) -> Path:
    """A journal folder whose segment another kiosk key signed; this kiosk's key is device.key."""
    home = make_station(tmp_path / "station")
    with open_test_journal(tmp_path, home) as journal:
        write_records(journal, 2)
    (tmp_path / "device.key").rename(tmp_path / "other.key")
    (tmp_path / "device.pub").unlink(missing_ok=True)
    return tmp_path / "journal"


def config_for(tmp_path: Path) -> object:
    for name in ("filters", "trust", "run"):
        (tmp_path / name).mkdir(exist_ok=True)
    raw = {
        "paths": {name: str(tmp_path / name) for name in ("filters", "trust", "journal")}
        | {"runtime": str(tmp_path / "run"), "device_key": str(tmp_path / "device.key"),
           "station_key": str(tmp_path / "station" / "journal.pub")},
        "lights": {"backend": "mock"},
        "bays": [{"name": "front", "red": 5, "amber": 6, "green": 13}],
    }  # fmt: skip
    return parse_config(raw, "test.toml")


def test_the_daemon_runs_with_the_fault_signal_and_recovers(
    kiosk_factory: Callable[..., Kiosk], tmp_path: Path
) -> None:
    folder = foreign_journal(tmp_path)
    station_key = tmp_path / "station" / "journal.pub"
    assert station_key.exists()
    config = config_for(tmp_path)
    journal = open_journal(config)  # type: ignore[arg-type]
    assert isinstance(journal, ReopeningJournal) and not journal.healthy
    assert "another device key" in str(journal.last_error)

    def health() -> str | None:
        return None if journal.healthy else f"journal: {journal.last_error}"

    kiosk = kiosk_factory(with_filter={"a.jpg": b"x" * 5000}, journal=journal, journal_health=health)
    status_path = kiosk.root / "run" / "status.json"
    kiosk.wait(lambda: kiosk.bay().lights.signal.value == "fault")
    kiosk.wait(lambda: "another device key" in str(read_status(status_path)["journal"]["error"]))

    loop = kiosk.plug(image(tmp_path, filler(3, 5_000), "refused"))
    kiosk.wait(lambda: kiosk.bay().phase == "not scanned")
    assert kiosk.bay().verdict is None and kiosk.bay().lights.signal.value == "fault"
    kiosk.unplug(loop)

    shutil.move(folder, tmp_path / "journal-set-aside")  # the engineer moves the foreign folder away
    loop = kiosk.plug(image(tmp_path, filler(3, 5_000), "after-mending"))
    kiosk.wait(lambda: kiosk.bay().verdict is not None)
    assert kiosk.bay().verdict == "no_match" and kiosk.bay().lights.signal.value == "no_match"
    assert journal.healthy
    kiosk.unplug(loop)


def test_a_second_agent_on_the_same_folder_still_stops(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_test_journal(tmp_path, home), pytest.raises(JournalLocked):
        open_journal(config_for(tmp_path))  # type: ignore[arg-type]
