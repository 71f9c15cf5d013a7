"""``fieldtriage agent provision``: the kiosk's key once, and the enrollment file the station needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.journal.writer import EncryptedJournal
from tests.agent.journal.helpers import make_station

REPO = Path(__file__).resolve().parents[3]


def provision(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "agent", "provision", "--config", str(config), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_provision_writes_the_key_once_and_the_enrollment_file(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    data = tmp_path / "data"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[paths]\ndevice_key = "{data}/device.key"\nstation_key = "{home.journal_public_path}"\n'
        '[lights]\nbackend = "none"\n[[bays]]\nname = "bay 1"\nred = 17\namber = 27\ngreen = 22\n'
    )
    first = provision(config, "--json")
    assert first.returncode == 0, first.stderr
    enrollment = json.loads(first.stdout)
    assert json.loads((data / "enrollment.json").read_text()) == enrollment
    assert enrollment["format"] == "fieldtriage-kiosk-enrollment-1"
    assert enrollment["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    key = (data / "device.key").read_bytes()
    second = provision(config)
    assert second.returncode == 0 and second.stdout.startswith(
        f"kiosk {enrollment['kiosk_id']}: enrollment file"
    )
    assert (data / "device.key").read_bytes() == key  # kept
    with EncryptedJournal.open(data / "journal", data / "device.key", home.journal_public_path) as journal:
        assert journal.kiosk_id == enrollment["kiosk_id"]  # the id the station knows its journal by


def test_provision_with_a_bad_device_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    (tmp_path / "device.key").write_text("not a key")
    config.write_text(
        f'[paths]\ndevice_key = "{tmp_path}/device.key"\n'
        '[lights]\nbackend = "none"\n[[bays]]\nname = "bay 1"\nred = 17\namber = 27\ngreen = 22\n'
    )
    done = provision(config)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "paths.device_key" in done.stderr and "Traceback" not in done.stderr
