"""The device-mapper copy-on-write layer, on a kernel that has dm-snapshot (the guest's Debian kernel,
as a Raspberry Pi's has): this VM's kernel has no device-mapper, and the kiosk prefers xmount where it
is installed, so ``DmSnapshotOverlay`` runs nowhere else. A stick pulled without unmounting (its last
file only in the ext4 journal) is plugged into a port no bay takes (the agent leaves it alone) and
scanned in the guest by the kiosk's own code with that layer: the journal is replayed into a store
in RAM, the file is found, the stick receives no write and no mapping is left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.demo.images import PartitionSpec, make_disk_image

from .conftest import Lab
from .guest import Guest

NO_BAY_PORT = 4  # a root port of the xhci no bay takes (the bays are ports 1 and 2, the scanner 3)
PYTHON = "/opt/fieldtriage/.venv/bin/python"
SCRIPT = r"""
import json, sys
from pathlib import Path
from agent.device_scan import scan_device
from agent.devices.mounter import Mounter
from agent.devices.overlay import DmSnapshotOverlay, dm_snapshot_available
from agent.scan import Scanner
from filters.container import load_filter
from filters.keys import TrustStore
assert dm_snapshot_available(), "no dm-snapshot in this kernel"
trust = TrustStore.from_paths(sorted(Path("/var/lib/fieldtriage/trust").glob("*.pub")))
filters = [load_filter(p, trust) for p in sorted(Path("/var/lib/fieldtriage/filters").glob("*.ftf"))]
runtime = Path("/run/fieldtriage-test/overlay")
runtime.mkdir(parents=True, exist_ok=True)
result = scan_device(sys.argv[1], Mounter(runtime, overlay=DmSnapshotOverlay()), Scanner(filters))
print(json.dumps(result.to_json()))
"""


def test_a_dirty_journal_is_replayed_onto_a_device_mapper_snapshot(
    kiosk: Guest, lab: Lab, tmp_path: Path
) -> None:
    spec = PartitionSpec(
        "ext4", {"DCIM/old.jpg": os.urandom(9000)}, journal_only={"DCIM/new.jpg": lab.known["known_1.jpg"]}
    )
    image = make_disk_image(tmp_path / "pulled.img", "dos", [spec])
    stick = kiosk.plug(image, NO_BAY_PORT)
    try:
        found = kiosk.wait(
            lambda: (
                kiosk.sh(f"udevadm settle; ls /dev/disk/by-path/*-usb-0:{NO_BAY_PORT}:1.0-scsi-0:0:0:0").out
            ),
            60,
            "the stick in the guest",
        )
        device = kiosk.sh(f"readlink -f {found.split()[0]}").out.strip()
        kiosk.write_file("/run/fieldtriage-test/overlay-scan.py", SCRIPT.encode())
        done = kiosk.run([PYTHON, "/run/fieldtriage-test/overlay-scan.py", device], timeout=300)
        assert done.status == 0, done.err[-2000:]
        report = json.loads(done.out)
        (part,) = report["partitions"]
        if not part["replayed"]:
            print(report["device_problems"], kiosk.sh("dmesg | tail -n 15").out)
        assert part["needs_recovery"] is True and part["replayed"], report["device_problems"]
        assert part["replayed"]["layer"] == "dm-snapshot", part
        hits = [h["path"] for h in report["scan"]["hits"]]
        assert report["verdict"] == "priority_match" and hits == ["p1-replayed/DCIM/new.jpg"], report
        assert report["cleanup_problems"] == [], report
        assert kiosk.sh("dmsetup ls").out.strip() in ("", "No devices found"), "a mapping left behind"
        assert kiosk.writes(stick) == 0, "the stick received a write"
    finally:
        kiosk.unplug(stick)
