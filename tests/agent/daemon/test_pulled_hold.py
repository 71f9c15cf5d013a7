"""Which removal right after a "could not check" counts as a device pulled out mid-scan (the bay
holds its amber 60 s, phase "removed early"): the worker can end before udev's remove reaches the
daemon, because reads or the mount fail the moment a device goes. A device read whole that ends
"could not check" (an encrypted stick) and is taken out at once is ready again."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.daemon.cli import lights_for
from agent.daemon.main import Daemon
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import MountedDevice, Mounter
from agent.devices.source import FakeDeviceSource
from filters.errors import DeviceError
from tests.agent.daemon.test_phone_daemon import ListJournal, wait
from tests.agent.scan.conftest import FilterFactory, write_random


class GoneMounter(Mounter):
    """The stick is gone as the kiosk opens it: the mount fails with an I/O error."""

    def mount(self, source: str) -> MountedDevice:  # type: ignore[override]
        raise DeviceError(source, "cannot read the partition table: Input/output error")


def run(tmp_path: Path, mounter: type[Mounter]) -> Any:
    known = write_random(tmp_path / "known.jpg", 10_000, 3)
    factory = FilterFactory(tmp_path / "made")
    for name in ("filters", "trust", "run", "journal"):
        (tmp_path / name).mkdir()
    (tmp_path / "filters" / "lab.ftf").write_bytes(factory.path([known]).read_bytes())
    (tmp_path / "trust" / "lab.pub").write_bytes(factory.pub_path.read_bytes())
    config = parse_config(
        {
            "paths": {n: str(tmp_path / n) for n in ("filters", "trust", "journal")}
            | {"runtime": str(tmp_path / "run")},
            "lights": {"backend": "mock"},
            "bays": [{"name": "front", "red": 5, "amber": 6, "green": 13}],
        },
        "test.toml",
    )
    source = FakeDeviceSource()
    daemon = Daemon(
        config, source=source, mounter=mounter(tmp_path / "run"), lights=lights_for(config, MockFactory()),
        journal=ListJournal(), ticker=False,
    )  # fmt: skip
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        bay = daemon.bays[0]
        identity = DeviceIdentity("/dev/sdz", "/devices/test/sdz", "sdz", 1 << 20, bus="usb")
        source.plug(identity)
        wait(lambda: bay.verdict == "incomplete" and not bay.busy)  # the worker ended first
        source.unplug(identity.devpath)  # then udev's remove
        wait(lambda: bay.device is None)
        wait(lambda: bay.phase in ("removed early", "ready"))
        return bay.phase, bay.lights.signal.value
    finally:
        daemon.request_stop()
        thread.join(10)
        source.close()


def test_a_stick_whose_mount_failed_as_it_went_is_held_as_pulled_early(tmp_path: Path) -> None:
    assert run(tmp_path, GoneMounter) == ("removed early", "could_not_check")
