"""``fieldtriage agent status`` against the real daemon (``fieldtriage agent`` started with a test
configuration, no lights, no device): fault without a filter (exit 1, a fault line), ready
once a filter is added (exit 0), hung when stopped with SIGSTOP and its heartbeat is old (exit 3),
not running after ``kill -9`` (exit 3), and after a clean stop (SIGTERM) not running either, with no
filter in use and no bay ready."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon.cli import STALE_SECONDS
from agent.daemon.status import EXIT_STATUS, agent_status
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key

REPO = Path(__file__).resolve().parents[3]
WAIT = 30.0


class Kiosk:
    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in ("filters", "trust", "keys"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.config = root / "agent.toml"
        self.config.write_text(
            f'[paths]\nfilters = "{root}/filters"\ntrust = "{root}/trust"\nruntime = "{root}/run"\n'
            f'journal = "{root}/journal"\ndevice_key = "{root}/device.key"\n'
            # no device has this property: devices other tests tag FIELDTRIAGE_TEST=1 are not taken
            '[devices]\nmatch = ["FIELDTRIAGE_STATUS_TEST=never"]\nsettle_seconds = 0.1\n'
            '[lights]\nbackend = "none"\n[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\n'
        )
        self.agent: subprocess.Popen[str] | None = None

    def start(self) -> subprocess.Popen[str]:
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "agent", "--config", str(self.config)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        pid = self.agent.pid
        self.wait(lambda report: report.get("pid") == pid and report["agent_state"] == "running")
        return self.agent

    def add_filter(self) -> None:
        key, public = generate_key_pair(self.root / "keys" / "provider")
        shutil.copy(public, self.root / "trust" / "provider.pub")
        builder = FilterBuilder(name="unit 7")
        builder.add(DigestEntry("md5", bytes(range(16)), "test-known", "priority", from_content=True))
        write_filter(self.root / "filters" / "unit7.ftf", builder.build_unsigned(), load_private_key(key))

    def status(self, settled: bool = True) -> tuple[int, str, dict[str, Any]]:
        """The real command, as text and as JSON: (exit status, text, document); ``settled``: the
        agent is not changing state between the two runs."""
        runs = [
            subprocess.run(
                [sys.executable, "-m", "agent.cli", "agent", "status", "--config", str(self.config), *extra],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            for extra in ([], ["--json"])
        ]
        assert not runs[0].stderr and not runs[1].stderr, runs
        report = json.loads(runs[1].stdout)
        if settled:
            assert runs[0].returncode == runs[1].returncode == EXIT_STATUS[report["state"]], runs
            assert runs[0].stdout.splitlines()[0].startswith(f"agent: {report['state']} "), runs
        return runs[0].returncode, runs[0].stdout, report

    def wait(self, done: Callable[[dict[str, Any]], bool]) -> tuple[int, str, dict[str, Any]]:
        deadline = time.monotonic() + WAIT
        while True:
            if done(agent_status(self.root / "run" / "status.json", STALE_SECONDS)):  # (quicker)
                code, _, report = self.status(settled=False)
                if done(report) and code == EXIT_STATUS[report["state"]]:  # (the text's run agrees)
                    return self.status()
            assert time.monotonic() < deadline, self.status(settled=False)
            time.sleep(0.2)


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    made = Kiosk(tmp_path / "kiosk")
    yield made
    if made.agent is not None and made.agent.poll() is None:
        os.kill(made.agent.pid, signal.SIGCONT)
        made.agent.kill()
        made.agent.wait()


def test_fault_ready_hung_and_killed(kiosk: Kiosk) -> None:
    agent = kiosk.start()
    code, text, report = kiosk.wait(lambda r: r["state"] == "fault")
    assert code == 1 and report["reason"].startswith("no valid filter")
    assert text.splitlines()[0].startswith(f"agent: fault (pid {agent.pid}, since ")
    assert text.splitlines()[1] == f"fault: {report['reason']}"

    kiosk.add_filter()  # picked up within seconds, no restart
    code, text, report = kiosk.wait(lambda r: r["state"] == "ready")
    assert code == 0 and report["reason"] is None and "\nfault: " not in text, text
    assert "filters: 1 in use\n  unit 7 (1 entry, " in text and "bay front: ready" in text
    if "expires" in report["filters"][0]:  # (the filter store lists each filter's expiry)
        assert "; never expires)" in text

    os.kill(agent.pid, signal.SIGSTOP)  # hung: alive, but its heartbeat stops
    try:
        status_file = kiosk.root / "run" / "status.json"
        old = time.time() - STALE_SECONDS - 1
        os.utime(status_file, (old, old))
        code, text, report = kiosk.status()
        assert code == 3 and report["state"] == "not running" and report["reason"].endswith("the agent hangs")
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    code, _, report = kiosk.wait(lambda r: r["state"] == "ready")  # it writes again
    assert code == 0

    agent.send_signal(signal.SIGKILL)
    code, text, report = kiosk.wait(lambda r: r["state"] != "ready")
    assert code == 3 and report["state"] == "not running"
    assert report["reason"].startswith(f"process {agent.pid} ") and "killed or crashed" in report["reason"]
    assert report["agent_state"] == "running", "the file still says running: the check does not believe it"
    assert text.splitlines()[1] == f"not running: {report['reason']}"
    assert "filters: none in use" in text and "bay front" not in text
    agent.wait()
    code, _, report = kiosk.status()
    assert code == 3 and report["reason"].startswith(f"process {agent.pid} is gone")


def test_a_clean_stop_says_stopped(kiosk: Kiosk) -> None:
    kiosk.add_filter()
    agent = kiosk.start()
    assert kiosk.wait(lambda r: r["state"] == "ready")[0] == 0
    agent.terminate()
    assert agent.wait(10) == 0
    code, text, report = kiosk.status()
    assert code == 3 and report["state"] == "not running" and report["agent_state"] == "stopped"
    assert report["reason"].startswith("the agent stopped at ")
    assert report["filters"] == [] and report["bays"] == []
    assert "filters: none in use (the agent is not running)" in text and "ready" not in text
    written = json.loads((kiosk.root / "run" / "status.json").read_text())
    assert written["state"] == "stopped" and written["filters"] == [] and written["fault"] is None
    assert [(b["name"], b["phase"], b["signal"]) for b in written["bays"]] == [("front", "stopped", "off")]
