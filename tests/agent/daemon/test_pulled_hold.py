"""Which removal right after a "could not check" counts as a device pulled out mid-scan (the bay
holds its amber 60 s, phase "removed early"): the worker can end before udev's remove reaches the
daemon, because reads or the mount fail the moment a device goes. A device read whole that ends
"could not check" (an encrypted stick) and is taken out at once is ready again."""

from __future__ import annotations

from pathlib import Path

from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import MountedDevice, Mounter
from filters.errors import DeviceError
from tests.agent.daemon.fake_kiosk import kiosk_config, running_daemon, wait
from tests.agent.scan.conftest import FilterFactory, write_random


class GoneMounter(Mounter):
    """The stick is gone as the kiosk opens it: the mount fails with an I/O error."""

    def mount(self, source: str) -> MountedDevice:  # type: ignore[override]
        raise DeviceError(source, "cannot read the partition table: Input/output error")


def test_a_stick_whose_mount_failed_as_it_went_is_held_as_pulled_early(tmp_path: Path) -> None:
    factory = FilterFactory(tmp_path / "made")
    config = kiosk_config(
        tmp_path, factory.path([write_random(tmp_path / "k.jpg", 10_000, 3)]), factory.pub_path
    )
    with running_daemon(config, GoneMounter(tmp_path / "run")) as (daemon, source, _):
        bay = daemon.bays[0]
        identity = DeviceIdentity("/dev/sdz", "/devices/test/sdz", "sdz", 1 << 20, bus="usb")
        source.plug(identity)
        wait(lambda: bay.verdict == "incomplete" and not bay.busy)  # the worker ended first
        source.unplug(identity.devpath)  # then udev's remove
        wait(lambda: bay.device is None and bay.phase in ("removed early", "ready"))
        assert (bay.phase, bay.lights.signal.value) == ("removed early", "could_not_check")
