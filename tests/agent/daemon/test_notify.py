"""sd_notify without a library: datagrams to NOTIFY_SOCKET, watchdog interval from the environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.daemon.notify import SystemdNotifier


def test_sends_to_the_socket_and_reads_the_watchdog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        notifier = SystemdNotifier.from_environment()
        assert notifier.watchdog_interval == 15.0
        assert notifier.send("READY=1", "STATUS=ready, 1 filter")
        assert server.recv(4096) == b"READY=1\nSTATUS=ready, 1 filter"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    notifier = SystemdNotifier.from_environment()
    assert notifier.watchdog_interval is None
    assert not notifier.send("READY=1")
