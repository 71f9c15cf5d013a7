"""``agent status`` does not take the status file's word for it: a fake status file naming real
processes (a sleeping one whose command line is the agent's, one that is not the agent, one killed
with SIGKILL, before and after it is reaped), a heartbeat too old, a fault, a clean stop; the text
and the JSON say the same, and the exit status is 0 ready, 1 fault, 3 not running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.daemon.cli import STALE_SECONDS
from agent.daemon.status import (
    EXIT_STATUS,
    agent_status,
    format_status,
    is_agent_command,
    process_problem,
    stopped_status,
    write_status,
)

SLEEP = "import time; time.sleep(120)"


def status(pid: int, **changes: Any) -> dict[str, Any]:
    return {
        "state": "running",
        "pid": pid,
        "started": "2026-11-28T10:00:00Z",
        "updated": "2026-11-28T10:05:00Z",
        "fault": None,
        "filters": [
            {"name": "unit 7", "entries": 1_000_000, "file": "/f/u7.ftf", "expires": "2026-12-01T23:59:59Z",
             "expires_in_days": 3, "expiring_soon": True},
            {"name": "national", "entries": 20, "file": "/f/n.ftf", "expires": None, "expires_in_days": None,
             "expiring_soon": False},
        ],
        "filter_problems": [],
        "journal": {"healthy": True, "error": None},
        "bays": [{"name": "front", "phase": "ready", "signal": "ready", "device": None, "progress": None}],
    } | changes  # fmt: skip


@pytest.fixture
def fake_agent() -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping process whose command line is the agent's (``... fieldtriage agent``)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SLEEP, "/opt/fieldtriage/.venv/bin/fieldtriage", "agent"]
    )
    yield process
    process.kill()
    process.wait()


def config_for(tmp_path: Path) -> Path:
    runtime = tmp_path / "run"
    runtime.mkdir(exist_ok=True)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[paths]\nruntime = "{runtime}"\n[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\n'
    )
    return config


def run_status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any]]:
    """``agent status`` as text and as JSON: (exit status, text, JSON), the same exit both ways."""
    code = main(["agent", "status", "--config", str(config)])
    text = capsys.readouterr().out
    assert main(["agent", "status", "--config", str(config), "--json"]) == code
    return code, text, json.loads(capsys.readouterr().out)


def test_command_lines_of_the_agent() -> None:
    assert is_agent_command(["/opt/fieldtriage/.venv/bin/python3", "/opt/fieldtriage/.venv/bin/fieldtriage",
                             "agent", "--config", "/etc/fieldtriage/agent.toml"])  # fmt: skip
    assert is_agent_command(["/usr/bin/python3", "-m", "agent.cli", "agent", "run"])
    assert not is_agent_command(["fieldtriage", "agent", "status"])
    assert not is_agent_command(["fieldtriage", "scan", "/mnt"])
    assert not is_agent_command(["sleep", "60"])
    assert not is_agent_command([])


def test_ready_fault_and_expiry(
    tmp_path: Path, fake_agent: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "run" / "status.json"
    write_status(path, status(fake_agent.pid))
    code, text, report = run_status(config, capsys)
    assert code == 0 and report["state"] == "ready" and report["reason"] is None
    assert text.startswith(f"agent: ready (pid {fake_agent.pid}, since 2026-11-28T10:00:00Z, status written ")
    assert "  unit 7 (1,000,000 entries, /f/u7.ftf; expires 2026-12-01T23:59:59Z, in 3 days)" in text
    assert "  national (20 entries, /f/n.ftf; never expires)" in text
    assert "  WARNING: /f/u7.ftf (unit 7): expires 2026-12-01T23:59:59Z, in 3 days" in text
    assert report["filter_warnings"] == ["/f/u7.ftf (unit 7): expires 2026-12-01T23:59:59Z, in 3 days"]
    assert "bay front: ready  lights ready" in text
    # the daemon's own warning lines, where it writes them, are shown as they are
    write_status(path, status(fake_agent.pid, filter_warnings=["/f/u7.ftf (unit 7): expires in 3 days"]))
    code, text, report = run_status(config, capsys)
    assert text.count("WARNING") == 1 and "WARNING: /f/u7.ftf (unit 7): expires in 3 days" in text

    write_status(path, status(fake_agent.pid, fault="no valid filter: none loaded", filters=[]))
    code, text, report = run_status(config, capsys)
    assert code == EXIT_STATUS["fault"] == 1
    assert report["state"] == "fault" and report["reason"] == "no valid filter: none loaded"
    assert text.splitlines()[1] == "fault: no valid filter: none loaded"

    bay = {"name": "front", "phase": "not journaled", "signal": "priority_match_unrecorded",
           "problem": "journal: No space left on device", "device": None}  # fmt: skip
    write_status(path, status(fake_agent.pid, bays=[bay]))
    code, text, report = run_status(config, capsys)
    assert code == 1 and report["reason"] == "bay front: journal: No space left on device"
    assert "fault: bay front: journal: No space left on device" in text


def test_kill_9_is_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(tmp_path)
    agent = subprocess.Popen([sys.executable, "-c", SLEEP, "fieldtriage", "agent"])
    write_status(tmp_path / "run" / "status.json", status(agent.pid))
    assert run_status(config, capsys)[0] == 0
    os.kill(agent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_problem(agent.pid) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    code, text, report = run_status(config, capsys)  # a zombie: not reaped yet
    assert code == 3 and report["state"] == "not running"
    assert (
        report["reason"]
        == f"process {agent.pid} has ended: the agent ended without stopping (killed or crashed)"
    )
    assert report["bays"] == [] and report["filters"] == [] and report["filter_warnings"] == []
    assert text.splitlines()[1] == f"not running: {report['reason']}"
    assert "filters: none in use (the agent is not running)" in text
    assert "bay front" not in text and "WARNING" not in text and "unit 7" not in text
    agent.wait()
    code, text, report = run_status(config, capsys)
    assert code == 3 and report["reason"].startswith(f"process {agent.pid} is gone: the agent ended without")


def test_a_pid_reused_by_another_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_for(tmp_path)
    other = subprocess.Popen(["sleep", "120"])
    try:
        write_status(tmp_path / "run" / "status.json", status(other.pid))
        code, _, report = run_status(config, capsys)
        assert code == 3 and report["reason"].startswith(f"process {other.pid} is not the agent (sleep 120)")
    finally:
        other.kill()
        other.wait()


def test_a_heartbeat_too_old_is_a_hung_agent(
    tmp_path: Path, fake_agent: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "run" / "status.json"
    write_status(path, status(fake_agent.pid))
    old = time.time() - STALE_SECONDS - 5
    os.utime(path, (old, old))
    code, text, report = run_status(config, capsys)
    assert code == 3 and report["state"] == "not running" and f"not running: {report['reason']}" in text
    assert "has not written its status for" in report["reason"] and report["reason"].endswith(
        "the agent hangs"
    )
    assert report["status_age_s"] >= STALE_SECONDS
    just = time.time() - STALE_SECONDS + 3
    os.utime(path, (just, just))
    assert run_status(config, capsys)[0] == 0, "a heartbeat within the limit"
    assert 3 * 1.0 < STALE_SECONDS < 30, "beyond the daemon's intervals, within systemd's watchdog"


def test_a_clean_stop(
    tmp_path: Path, fake_agent: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    path = tmp_path / "run" / "status.json"
    final = stopped_status(status(fake_agent.pid, updated="2026-11-28T11:00:00Z"))
    assert final["filters"] == [] and final["bays"] == [
        {"name": "front", "port": None, "phase": "stopped", "signal": "off"}
    ]
    write_status(path, final)
    code, text, report = run_status(config, capsys)  # (even with its pid still alive)
    assert code == 3 and report["reason"] == "the agent stopped at 2026-11-28T11:00:00Z"
    assert report["agent_state"] == "stopped"
    assert "in use" not in text.replace("none in use", "") and "ready" not in text


def test_text_and_json_say_the_same(tmp_path: Path, fake_agent: subprocess.Popen[bytes]) -> None:
    """Every fact of the text is in the JSON document it is made from (it is rendered from it)."""
    path = tmp_path / "status.json"
    write_status(path, status(fake_agent.pid, fault="journal: No space left on device"))
    report = agent_status(path, STALE_SECONDS)
    assert format_status(json.loads(json.dumps(report))) == format_status(report)
    text = format_status(report)
    for fact in (report["state"], report["reason"], str(report["pid"]), str(report["status_age_s"])):
        assert fact in text


def test_hostile_names_in_the_status_are_escaped(tmp_path: Path, fake_agent: subprocess.Popen[bytes]) -> None:
    """A device's vendor and model come from its USB descriptors: shown escaped, one line each."""
    bay = {"name": "front", "phase": "scanning", "signal": "scanning", "progress": 0.5,
           "device": {"vendor": "Evil\x1b[2J", "model": "Stick\nfault: none"}}  # fmt: skip
    path = tmp_path / "status.json"
    write_status(path, status(fake_agent.pid, bays=[bay]))
    text = format_status(agent_status(path, STALE_SECONDS))
    assert "\x1b" not in text and "device Evil\\x1b[2J Stick\\nfault: none" in text
