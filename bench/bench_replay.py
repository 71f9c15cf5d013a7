"""What a stick pulled without unmounting costs: mount time and full-scan speed of the on-disk view
against the view replayed onto xmount's copy-on-write layer, side by side in one run.

For each filesystem: an image with a tree of generated files on disk and a few files written with
fsync just before the copy (only in the journal); the agent's Mounter mounts both views; each view
is scanned in full mode (every byte hashed), cold (caches dropped) and warm, best of ``--repeat``.

    sudo .venv/bin/python bench/bench_replay.py [--mib 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.demo.images import PartitionSpec, make_disk_image
from agent.devices.mounter import Mounter
from agent.devices.overlay import XmountOverlay, xmount_available
from agent.scan import Scanner
from bench.machine_info import machine_line
from bench.usb_throttle import drop_caches
from filters.builder import FilterBuilder
from filters.importers import DigestEntry

KINDS = ("ext4", "xfs", "btrfs")


def tree(total_mib: int) -> dict[str, bytes]:
    files, size, number = {}, 0, 0
    while size < total_mib << 20:
        length = (64 << 10) + (number * 7919 % (4 << 20))
        files[f"DCIM/Camera/IMG_{number:05d}.jpg"] = os.urandom(length)
        size += length
        number += 1
    return files


def scan_seconds(scanner: Scanner, root: Path, cold: bool) -> tuple[float, int, int]:
    """(seconds, files read, bytes read) of a full scan of ``root``."""
    if cold:
        drop_caches()
    started = time.perf_counter()
    report = scanner.scan([os.fsencode(root)])
    return time.perf_counter() - started, report.counts.files_read, report.counts.bytes_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="size of the tree on each filesystem")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not xmount_available():
        sys.exit("bench_replay: needs xmount and /dev/fuse")
    builder = FilterBuilder(name="bench")
    builder.add(DigestEntry("md5", bytes(16), "known", "priority"))
    scanner = Scanner([builder.build_unsigned()], mode="full", workers=1)
    files = tree(args.mib)
    print(f"Machine: {machine_line(f'tree {args.mib} MiB, {len(files)} files, full mode (md5), one worker')}")
    print()
    print(
        "| filesystem | mount, clean | mount, both views (replay on xmount) | view | files read "
        "| cold MB/s | warm MB/s |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fieldtriage-bench-replay-") as scratch:
        folder = Path(scratch)
        for kind in KINDS:
            size = (args.mib * 3 // 2 + 96) << 20
            clean = PartitionSpec(kind, files, size=size)
            clean_image = make_disk_image(folder / f"{kind}-clean.img", "dos", [clean])
            pulled = PartitionSpec(kind, files, size=size, journal_only={"DCIM/new.jpg": os.urandom(1 << 20)})
            pulled_image = make_disk_image(folder / f"{kind}-pulled.img", "dos", [pulled])
            mounter = Mounter(folder / "run", overlay=XmountOverlay())
            started = time.perf_counter()
            with mounter.mount(clean_image):
                clean_mount = time.perf_counter() - started
            started = time.perf_counter()
            with mounter.mount(pulled_image) as mounted:
                both_mount = time.perf_counter() - started
                (part,) = mounted.partitions
                assert part.replayed is not None and part.replayed.mountpoint and part.mountpoint
                views = {"on disk": part.mountpoint, "replayed": part.replayed.mountpoint}
                for name, root in views.items():
                    cold = min(scan_seconds(scanner, root, True) for _ in range(args.repeat))
                    warm = min(scan_seconds(scanner, root, False) for _ in range(args.repeat))
                    megabytes = cold[2] / 1e6
                    rates = f"{megabytes / cold[0]:.0f} | {megabytes / warm[0]:.0f}" if cold[1] else "- | -"
                    mounts = f"{clean_mount:.2f} s | {both_mount:.2f} s"
                    print(f"| {kind} | {mounts} | {name} | {cold[1]} | {rates} |")
            clean_image.unlink()
            pulled_image.unlink()


if __name__ == "__main__":
    main()
