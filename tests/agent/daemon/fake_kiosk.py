"""A daemon on fakes, for tests of its logic: a fake device source (events pushed by the test),
mock GPIO pins, a journal kept in a list; real filters in a kiosk folder of the test's own.

Example::

    config = kiosk_config(tmp_path, filter_path, public_key)
    with running_daemon(config, Mounter(tmp_path / "run")) as (daemon, source, journal):
        source.plug(identity)
        wait(lambda: daemon.bays[0].verdict is not None)
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from agent.config import AgentConfig, parse_config
from agent.daemon.cli import lights_for
from agent.daemon.main import Daemon
from agent.devices.mounter import Mounter
from agent.devices.source import FakeDeviceSource
from agent.phones.camera import PhoneBackend


class ListJournal:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def wait(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def kiosk_config(
    root: Path, filter_path: Path, public_key: Path, bay_port: str | None = None, **sections: Any
) -> AgentConfig:
    """A kiosk of one bay, "front", under ``root``, holding ``filter_path`` and trusting
    ``public_key``; ``sections`` are more config tables (``scan={"mode": "quick"}``)."""
    for name in ("filters", "trust", "run", "journal"):
        (root / name).mkdir(parents=True)
    shutil.copy(filter_path, root / "filters" / "lab.ftf")
    shutil.copy(public_key, root / "trust" / "lab.pub")
    bay: dict[str, Any] = {"name": "front", "red": 5, "amber": 6, "green": 13}
    if bay_port is not None:
        bay["port"] = bay_port
    raw = {
        "paths": {n: str(root / n) for n in ("filters", "trust", "journal")} | {"runtime": str(root / "run")},
        "lights": {"backend": "mock"},
        "bays": [bay],
        **sections,
    }
    return parse_config(raw, "test.toml")


@contextlib.contextmanager
def running_daemon(
    config: AgentConfig, mounter: Mounter, phones: PhoneBackend | None = None
) -> Iterator[tuple[Daemon, FakeDeviceSource, ListJournal]]:
    """The daemon running in a thread; stopped, and its source closed, at the end."""
    source, journal = FakeDeviceSource(), ListJournal()
    daemon = Daemon(
        config, source=source, mounter=mounter, lights=lights_for(config, MockFactory()),
        journal=journal, ticker=False, phones=phones,
    )  # fmt: skip
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        yield daemon, source, journal
    finally:
        daemon.request_stop()
        thread.join(10)
        source.close()
