"""``fieldtriage demo``: the whole job on generated data, with nothing to set up.

First the filter: a provider key, stand-in "known material" (generated pictures), a signed filter
built from it, and a folder checked against it file by file. Then the kiosk (``agent.demo.kiosk``,
root): the real daemon takes three demo devices from udev, mounts them read-only and lights its bay
in the terminal; a sync stick takes its encrypted journal to a demo station (``agent.demo.station``),
which imports, reports, reviews the hits and shares a filter of the confirmed finds; the stick brings
that filter and the exclusion of the false positive back to the kiosk, which scans the phone again.
All data is synthetic.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from agent.demo.pictures import generated_picture
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import digest_path
from filters.errors import UsageError
from filters.importers import ImportOptions, ImportReport
from filters.importers.detect import read_input
from filters.keys import TrustStore, generate_key_pair, load_private_key

RED, GREEN, RESET = "\033[41;97m", "\033[42;30m", "\033[0m"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the main job on generated demo data")
    parser.add_argument("--folder", type=Path, default=Path("demo-out"), help="where demo files go")
    parser.add_argument(
        "--seed", type=int, default=2026, help="seed of the generated pictures and devices (default 2026)"
    )
    parser.add_argument("--filter-only", action="store_true", help="only build a filter and look files up")
    parser.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    status = filter_demo(args)
    if args.filter_only:
        return status
    from agent.demo.kiosk import run_kiosk_demo

    base: Path = args.folder
    return run_kiosk_demo(
        base.resolve(),
        base / "demo.ftf",
        base / "keys",
        sorted((base / "known-material").iterdir()),
        args.seed,
    )


def clear_previous_run(base: Path) -> None:
    """Remove an earlier demo's folder, first unmounting anything a crashed run left mounted in it."""
    inside = str(base.resolve()) + "/"
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        mounts = []
    for mountpoint in sorted((m for m in mounts if m.startswith(inside)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
    try:
        shutil.rmtree(base)
    except OSError as err:
        raise UsageError(base, f"cannot remove the previous demo: {err.strerror}") from err


def filter_demo(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    base: Path = args.folder
    if base.exists():
        clear_previous_run(base)
    known, device, keys = base / "known-material", base / "device", base / "keys"
    for folder in (known, device / "DCIM" / "Camera", device / "Documents", keys):
        folder.mkdir(parents=True)
    for number in range(40):
        (known / f"known_{number:03}.png").write_bytes(generated_picture(rng))
    for number in range(30):
        (device / "DCIM" / "Camera" / f"IMG_{number:04}.png").write_bytes(generated_picture(rng))
    for number in range(10):
        (device / "Documents" / f"note_{number}.txt").write_bytes(rng.randbytes(rng.randrange(10, 5000)))
    for number in (3, 17):
        shutil.copy(known / f"known_{number:03}.png", device / "DCIM" / "Camera" / f"IMG_9{number:03}.png")

    private_path, public_path = generate_key_pair(keys / "demo-provider")
    report = ImportReport()
    builder = FilterBuilder(name="demo filter", provider="fieldtriage demo")
    builder.add_all(read_input(str(known), "folder", ImportOptions(category="demo-known"), report))
    filter_path = base / "demo.ftf"
    write_filter(filter_path, builder.build_unsigned(), load_private_key(private_path))
    contraband = load_filter(filter_path, TrustStore.from_paths([public_path]))
    print(f"built and signed {filter_path}: {contraband.entry_count} entries in {len(contraband.sets)} sets")
    print(f"checking {device} against it (2 known pictures hidden among 40 files):")

    colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
    hits = 0
    for path in sorted(p for p in device.rglob("*") if p.is_file()):
        matches = contraband.lookup(digest_path(path, contraband.kinds))
        if matches:
            hits += 1
            sets = ", ".join(sorted({f"{m.kind} in {m.filter_set.category}" for m in matches}))
            label = f"{RED} MATCH {RESET}" if colour else "[MATCH]"
            print(f"  {label} {path.relative_to(device)} ({sets})")
    verdict = "PRIORITY MATCH" if hits else "NO MATCH"
    box = (RED if hits else GREEN) if colour else ""
    print(f"verdict: {box} {verdict} {RESET if colour else ''} ({hits} files matched)")
    return 0
