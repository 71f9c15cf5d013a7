"""The clock helper's units: the path unit watches the request the agent writes, the service holds
CAP_SYS_TIME and @clock and nothing else (exposure well under the agent's), and the agent's own unit
still withholds both."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import PathsConfig
from agent.daemon.clock_step import DEFAULT_REQUEST, REQUEST_NAME
from agent.journal.clock import CLOCK_HELPER_FOLDER

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
SERVICE = SYSTEMD / "fieldtriage-clock.service"
PATH_UNIT = SYSTEMD / "fieldtriage-clock.path"
VENV_PYTHON = "/opt/fieldtriage/.venv/bin/python"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def with_this_python(tmp_path: Path) -> Path:
    folder = tmp_path / "units"
    folder.mkdir()
    for unit in (SERVICE, PATH_UNIT):
        (folder / unit.name).write_text(unit.read_text().replace(VENV_PYTHON, sys.executable))
    return folder / SERVICE.name


def test_the_path_unit_watches_the_request_the_agent_writes() -> None:
    (watched,) = settings(PATH_UNIT)["PathExists"]
    assert Path(watched) == PathsConfig().runtime / "clock" / REQUEST_NAME == DEFAULT_REQUEST
    assert settings(PATH_UNIT)["Unit"] == [SERVICE.name]
    assert f"d {CLOCK_HELPER_FOLDER} 0700 root root -" in (SYSTEMD / "fieldtriage.conf").read_text()


def test_the_helper_holds_what_sets_the_clock_and_nothing_more() -> None:
    helper = settings(SERVICE)
    assert helper["CapabilityBoundingSet"] == ["CAP_SYS_TIME"]
    assert "@clock" in helper["SystemCallFilter"][0].split() and "ProtectClock" not in helper
    assert helper["ReadWritePaths"] == [f"{DEFAULT_REQUEST.parent} {CLOCK_HELPER_FOLDER}"]
    assert helper["PrivateNetwork"] == ["yes"] and helper["PrivateDevices"] == ["yes"]
    assert helper["ExecStart"] == [
        f"{VENV_PYTHON} -I -m agent.daemon.clock_step --config /etc/fieldtriage/agent.toml"
    ]
    agent = settings(SYSTEMD / "fieldtriage-agent.service")  # the agent's unit is as it was
    assert agent["ProtectClock"] == ["yes"] and "CAP_SYS_TIME" not in agent["CapabilityBoundingSet"][0]
    assert any(rule.startswith("~") and "@clock" in rule.split() for rule in agent["SystemCallFilter"])


def test_the_helper_module_runs_as_the_unit_starts_it() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "agent.daemon.clock_step", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "never backwards" in done.stdout, done.stderr


@needs_analyze
def test_the_units_verify(tmp_path: Path) -> None:
    service = with_this_python(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(service), str(service.with_name(PATH_UNIT.name))],
        capture_output=True,
        text=True,
    )
    problems = [line for line in done.stderr.splitlines() if "fieldtriage-clock" in line]
    assert done.returncode == 0 and problems == [], done.stderr


@needs_analyze
def test_the_helper_exposure_is_low(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(with_this_python(tmp_path))],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 1.5, done.stdout[-2000:]
