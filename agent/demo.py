"""``fieldtriage demo``: the whole job on generated data, with nothing to set up.

Makes a provider key, generates stand-in "known material" (random pictures), builds and signs a
filter from it, then checks a generated device folder that holds a few known files among clean ones
and shows what the kiosk would say for each file. All data is synthetic.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import sys
import zlib
from pathlib import Path

from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import digest_path
from filters.importers import ImportOptions, ImportReport
from filters.importers.detect import read_input
from filters.keys import TrustStore, generate_key_pair, load_private_key

RED, GREEN, RESET = "\033[41;97m", "\033[42;30m", "\033[0m"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the main job on generated demo data")
    parser.add_argument("--folder", type=Path, default=Path("demo-out"), help="where demo files go")
    parser.add_argument("--seed", type=int, default=2026)
    parser.set_defaults(handler=cmd_demo)


def generated_picture(rng: random.Random, width: int = 64, height: int = 48) -> bytes:
    """A small valid PNG of random coloured stripes (stand-in for a photo)."""
    rows = []
    for _ in range(height):
        colour = bytes(rng.randrange(256) for _ in range(3))
        rows.append(b"\x00" + colour * width)
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    noise = rng.randbytes(rng.randrange(1000, 200_000))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"tEXt", b"Comment\x00" + noise.hex().encode()[: len(noise)])
        + chunk(b"IEND", b"")
    )


def cmd_demo(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    base: Path = args.folder
    if base.exists():
        shutil.rmtree(base)
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
