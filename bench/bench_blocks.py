"""Block sampling benchmarks (issue 15); each subcommand prints a Markdown table (not a test).

* ``build``: build time and size per block entry of a block set at ``--sizes`` blocks (default 1M
  and 10M), through ``FilterBuilder.add_blocks`` with synthetic items (730 random block digests
  each, a 3 MB photo's worth; 2% of the items share two blocks with another, 0.5% of the blocks are
  patterns, a common-blocks corpus of 10,000 blocks half of which are in items), then signed,
  written, loaded and verified in a fresh process (its peak RSS: the kiosk's memory for the filter),
  and the folder path's hashing rate over real generated files (``--hash-mib``).
* ``detect``: detection trials. A sparse ext4 image (``--image-gb``, default 64) gets ``--items``
  known items of ``--target-mib`` MiB each (random bytes; each in its own top-level folder, so
  ext4 spreads them), written, ``sync``ed, deleted (``rm``, ``sync``: the data stays) through a
  read-write loop mount of our own image; the block filter is built from the items' files before
  they are deleted. Then ``--trials`` block samples with fresh seeds, at the configured target and
  confidence, of the read-only image; trial ``i`` asks whether item ``i`` was found (and every
  trial counts all items found). Root.
* ``false-hits``: a clean ext4 image of generated ordinary content (documents, pictures from the
  same generator as the known ones, copies of this machine's software files), with the known
  items' filter built with the common-blocks corpus (other generated pictures and documents, the
  software folder) and without it; every block of the image looked up once: false block hits per
  million blocks. Root.
* ``usb``: time to the configured confidence at ``--usb-mbps`` (cgroup v1 blkio throttle on the
  read-only loop device, as ``usb_throttle.py`` does) on a sparse ext4 image of ``--image-gb``
  (also ``--image-gb 1024``), next to a full md5sum read of the device at the same rate (computed
  from the measured throttle rate: md5sum reads every byte). Root.

Example::

    .venv/bin/python bench/bench_blocks.py build --sizes 1000000 10000000
    sudo .venv/bin/python bench/bench_blocks.py detect --trials 100
    sudo .venv/bin/python bench/bench_blocks.py usb --image-gb 64 --usb-mbps 35
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import machine_line

from filters.blocks import BLOCK_SIZE
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.importers import BlockItem, ImportOptions, ImportReport
from filters.importers.folder import read_folder
from filters.keys import TrustStore, generate_key_pair, load_private_key

ITEM_BLOCKS = 730  # a 3 MB photo


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1 << 20)
    return machine_line(f"numpy {np.__version__}", f"{memory} GiB RAM", f"load average {load_average()}")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_table(rows: list[dict[str, str]]) -> None:
    headers = list(rows[0])
    print("| measure | " + " | ".join(r[headers[0]] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in headers[1:]:
        print(f"| {name} | " + " | ".join(r[name] for r in rows) + " |")


# -- build ------------------------------------------------------------------------------------------


def bench_build(blocks: int, folder: Path, key_path: Path, public: Path, subsample: int) -> dict[str, str]:
    rng = np.random.default_rng(blocks)
    builder = FilterBuilder(name=f"bench blocks {blocks}", block_subsample=subsample)
    common = [rng.bytes(32) for _ in range(5_000)]
    started = time.perf_counter()
    added = 0
    item = 0
    previous: list[bytes] = []
    while added < blocks:
        n = min(ITEM_BLOCKS, blocks - added)
        raw = rng.bytes(32 * n)
        digests = [raw[i : i + 32] for i in range(0, 32 * n, 32)]
        if item % 50 == 1 and previous:  # 2%: two blocks also in another item
            digests[:2] = previous[:2]
        if item % 20 == 3:  # 5% of the items hold one of the corpus' blocks
            digests[-1] = common[item % len(common)]
        patterns = bytearray(n)
        patterns[::200] = b"\x01" * len(patterns[::200])  # 0.5% patterns
        builder.add_blocks(BlockItem("known", "priority", digests, bytes(patterns), raw[:32] + bytes(8)))
        previous = digests
        added += n
        item += 1
    builder.add_common_blocks(common + [rng.bytes(32) for _ in range(5_000)])
    collected = time.perf_counter()
    contraband = builder.build_unsigned()
    constructed = time.perf_counter()
    out = folder / f"blocks-{blocks}.ftf"
    write_filter(out, contraband, load_private_key(key_path))
    written = time.perf_counter()
    stats = builder.block_stats
    assert stats is not None
    entries = contraband.block_sets[0].count
    build_rss = peak_rss_mib()
    del builder, contraband
    kiosk = json.loads(
        subprocess.run(
            [sys.executable, __file__, "load", str(out), str(public)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    size = out.stat().st_size
    out.unlink()
    return {
        "blocks": f"{blocks:,}",
        "items": f"{stats.items:,}",
        "left out: pattern / shared / common / not sampled": (
            f"{stats.pattern:,} / {stats.shared:,} / {stats.common:,} / {stats.not_sampled:,}"
        ),
        "block entries": f"{entries:,}",
        "collect (derive keys) s": f"{collected - started:.1f}",
        "build (removals, subsample, fuse) s": f"{constructed - collected:.1f}",
        "sign + write s": f"{written - constructed:.2f}",
        "**build total s**": f"{written - started:.1f}",
        "**bytes per block entry**": f"{size / entries:.3f}",
        "file MB": f"{size / 1e6:.1f}",
        "peak RSS of the build MiB": f"{build_rss:.0f}",
        "kiosk: load + verify s": f"{kiosk['seconds']:.2f}",
        "kiosk: RSS after load MiB (peak)": f"{kiosk['rss_mib']:.0f} ({kiosk['peak_mib']:.0f})",
        "kiosk: RSS of the interpreter alone MiB": f"{kiosk['base_mib']:.0f}",
    }


def cmd_load(args: argparse.Namespace) -> None:
    """A kiosk's view: RSS before and after loading one filter (a fresh process)."""
    import agent.device_scan  # noqa: F401  (the kiosk's modules, imported first)

    base = _status_mib("VmRSS")
    started = time.perf_counter()
    contraband = load_filter(args.filter, TrustStore.from_paths([args.public]))
    seconds = time.perf_counter() - started
    assert contraband.block_sets
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_mib": _status_mib("VmRSS"),
                "peak_mib": _status_mib("VmHWM"),
                "base_mib": base,
            }
        )
    )


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_hashing(mib: int, folder: Path) -> dict[str, str]:
    tree = folder / "hash-tree"
    tree.mkdir()
    rng = np.random.default_rng(1)
    left = mib << 20
    number = 0
    while left > 0:
        size = min(left, int(rng.integers(1 << 20, 6 << 20)))
        (tree / f"IMG_{number:05d}.jpg").write_bytes(rng.bytes(size))
        left -= size
        number += 1
    rows = {}
    for kinds in (("sample", "blake3"), ("sample", "blake3", "block")):
        report = ImportReport()
        started = time.perf_counter()
        builder = FilterBuilder(name="hash")
        builder.add_all(read_folder(tree, ImportOptions(digests=kinds), report))
        seconds = time.perf_counter() - started
        rows[",".join(kinds)] = seconds
    blocks = (mib << 20) // BLOCK_SIZE
    extra = rows["sample,blake3,block"] - rows["sample,blake3"]
    return {
        "files MiB": f"{mib}",
        "folder read, sample+blake3 s": (
            f"{rows['sample,blake3']:.1f} ({mib / rows['sample,blake3']:.0f} MiB/s)"
        ),
        "folder read, sample+blake3+block s": (
            f"{rows['sample,blake3,block']:.1f} ({mib / rows['sample,blake3,block']:.0f} MiB/s)"
        ),
        "block digests, pattern check, keys: us per block": f"{extra / blocks * 1e6:.2f}",
    }


def cmd_build(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        folder = Path(tmp)
        key_path, public = generate_key_pair(folder / "bench")
        for count in args.sizes:
            rows.append(bench_build(count, folder, key_path, public, args.subsample))
            print(f"done {count:,} (load average {load_average()})", file=sys.stderr)
        print_table(rows)
        if args.hash_mib:
            print()
            hashing = bench_hashing(args.hash_mib, folder)
            for name, value in hashing.items():
                print(f"| {name} | {value} |")
    print(f"\nload average at the end: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build")
    build.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    build.add_argument("--subsample", type=int, default=1)
    build.add_argument("--hash-mib", type=int, default=512)
    build.add_argument("--work", type=Path, default=None)
    build.set_defaults(handler=cmd_build)
    load = commands.add_parser("load")
    load.add_argument("filter", type=Path)
    load.add_argument("public", type=Path)
    load.set_defaults(handler=cmd_load)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
