"""The status file and ``fieldtriage agent status``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.cli import main
from agent.daemon.status import format_status, read_status, write_status

STATUS = {
    "state": "running",
    "pid": 42,
    "started": "2026-11-28T10:00:00Z",
    "filters": [{"name": "unit 7", "entries": 1_000_000, "file": "/var/lib/fieldtriage/filters/u7.ftf"}],
    "filter_problems": ["/var/lib/fieldtriage/filters/old.ftf: expired at 2026-01-01T00:00:00Z"],
    "journal": {"healthy": True, "error": None},
    "bays": [
        {"name": "left", "phase": "scanning", "progress": 0.42, "signal": "scanning",
         "device": {"vendor": "SanDisk", "model": "Cruzer", "devnode": "/dev/sda"}, "verdict": None},
        {"name": "right", "phase": "ready", "progress": None, "signal": "ready", "device": None,
         "verdict": None},
    ],
}  # fmt: skip


def test_round_trip_and_text(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_status(path, STATUS)
    assert read_status(path) == STATUS
    assert not list(tmp_path.glob(".*.tmp")), "written through a temporary file, renamed"
    text = format_status(STATUS)
    assert "bay left: scanning 42%  lights scanning  device SanDisk Cruzer" in text
    assert "skipped: /var/lib/fieldtriage/filters/old.ftf: expired" in text
    assert "journal: healthy" in text


def test_status_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[paths]\nruntime = "{runtime}"\n[[bays]]\nname = "left"\nred = 17\namber = 27\ngreen = 22\n'
    )
    assert main(["agent", "status", "--config", str(config)]) == 3
    assert "agent: not running (pid ?)\nnot running: no status file" in capsys.readouterr().out
    write_status(runtime / "status.json", STATUS | {"pid": os.getpid()})
    # this test's process is not the agent (and pid 42 may be anything)
    assert main(["agent", "status", "--config", str(config), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "not running" and f"process {os.getpid()} is not the agent" in report["reason"]
    assert report["bays"] == [] and report["filters"] == []
