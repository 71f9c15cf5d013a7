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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


# -- images -----------------------------------------------------------------------------------------

GiB = 1 << 30
MiB = 1 << 20


def sh(*command: str | Path, check: bool = True) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))}: {done.stderr.strip()}")
    return done.stdout


def sparse_ext4(path: Path, size: int) -> None:
    """A sparse file of ``size`` bytes holding an empty ext4 (nothing zeroed: lazy init)."""
    with path.open("wb") as f:
        f.truncate(size)
    sh("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", path)


class Mounted:
    """``image`` attached read-write (our own scratch image) and mounted, for writing items."""

    def __init__(self, image: Path, folder: Path) -> None:
        self.image, self.folder = image, folder

    def __enter__(self) -> Mounted:
        self.loop = sh("losetup", "-f", "--show", self.image).strip()
        sh("blockdev", "--setrw", self.loop)  # an earlier user's BLKROSET outlives a detach
        self.folder.mkdir(exist_ok=True)
        sh("mount", "-t", "ext4", self.loop, self.folder)
        return self

    def __exit__(self, *exc: object) -> None:
        sh("umount", self.folder, check=False)
        sh("blockdev", "--setrw", self.loop, check=False)
        sh("losetup", "-d", self.loop, check=False)
        self.folder.rmdir()


def extents_of(path: Path) -> list[tuple[int, int]]:
    """Physical byte ranges ``[start, end)`` of a file on its ext4 (FIEMAP via ``filefrag``)."""
    ranges = []
    for line in sh("filefrag", "-e", "-b4096", path).splitlines():
        parts = [p.strip() for p in line.split(":")]
        if len(parts) >= 4 and parts[0].isdigit():
            first, last = (int(x) for x in parts[2].split(".."))
            ranges.append((first * 4096, (last + 1) * 4096))
    return ranges


def item_of(offset: int, extents: list[list[tuple[int, int]]]) -> int | None:
    for number, ranges in enumerate(extents):
        if any(start <= offset < end for start, end in ranges):
            return number
    return None


def block_filter_of(folder: Path, key: Path) -> Path:
    builder = FilterBuilder(name="bench items")
    builder.add_all(read_folder(folder, ImportOptions(digests=("sample", "blake3", "block")), ImportReport()))
    out = folder.parent / "items.ftf"
    write_filter(out, builder.build_unsigned(), load_private_key(key))
    return out


# -- detect -----------------------------------------------------------------------------------------


def cmd_detect(args: argparse.Namespace) -> None:
    from agent.device_scan import scan_device
    from agent.devices.mounter import Mounter
    from agent.scan import Scanner
    from agent.scan.blocks import BlockSettings

    print(f"machine: {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="ft-blocks-detect-", dir=args.work))
    try:
        image = work / "fieldtriage-bench-64g.img"
        started = time.perf_counter()
        sparse_ext4(image, args.image_gb * GiB)
        items = work / "items"
        items.mkdir()
        rng = np.random.default_rng(args.seed)
        for number in range(args.items):
            (items / f"item{number:03d}.jpg").write_bytes(rng.bytes(args.target_mib * MiB))
        key, public = generate_key_pair(work / "bench")
        filter_path = block_filter_of(items, key)
        extents: list[list[tuple[int, int]]] = []
        with Mounted(image, work / "mnt") as mounted:
            for number in range(args.items):  # one top-level folder each: ext4 spreads them (Orlov)
                folder = mounted.folder / f"case{number:03d}"
                folder.mkdir()
                (folder / "ordinary.txt").write_bytes(b"ordinary text\n" * 200)
                sh("cp", items / f"item{number:03d}.jpg", folder / "item.jpg")
            sh("sync")
            for number in range(args.items):
                extents.append(extents_of(mounted.folder / f"case{number:03d}" / "item.jpg"))
            for number in range(args.items):
                (mounted.folder / f"case{number:03d}" / "item.jpg").unlink()
            sh("sync")
        prepared = time.perf_counter() - started
        fragments = [len(e) for e in extents]
        shutil.rmtree(items)
        trust = TrustStore.from_paths([public])
        contraband = load_filter(filter_path, trust)
        asked_found = 0
        item_trials = item_found = 0
        seconds: list[float] = []
        units = planned = 0
        probability = 0.0
        for trial in range(args.trials):
            settings = BlockSettings(
                args.target_mib * MiB, args.confidence, 3600.0, seed=args.seed * 1000 + trial
            )
            result = scan_device(str(image), Mounter(work / "run"), Scanner([contraband]), blocks=settings)
            blocks = result.blocks
            assert blocks is not None and not blocks.skipped and not blocks.stopped
            assert result.report is not None and not result.report.hits, "the items are deleted"
            found = {item_of(hit.offset, extents) for hit in blocks.hits}
            assert None not in found, "a block hit outside every item"
            asked_found += (trial % args.items) in found
            item_trials += args.items
            item_found += len(found)
            seconds.append(blocks.seconds)
            units, planned, probability = blocks.units, blocks.planned, blocks.probability
            print(f"trial {trial}: {len(found)} of {args.items} items found", file=sys.stderr)
        low, high = wilson(item_found, item_trials)
        rows = [
            (
                "image",
                f"{args.image_gb} GiB sparse ext4 (mkfs.ext4, lazy init), "
                f"{image.stat().st_blocks * 512 / MiB:.0f} MiB allocated after the deletions",
            ),
            (
                "known items",
                f"{args.items} of {args.target_mib} MiB (random bytes), written, synced, rm, synced",
            ),
            (
                "item extents",
                f"{min(fragments)} to {max(fragments)} (mean {sum(fragments) / len(fragments):.2f})",
            ),
            (
                "filter",
                f"sample + blake3 + block sets, k = 1: {contraband.block_sets[0].count:,} block entries",
            ),
            ("units (4 KiB places) / sampled per trial", f"{units:,} / {planned:,} (P = {probability:.5f})"),
            ("**trials: item i found in trial i**", f"**{asked_found} of {args.trials}**"),
            (
                "every item in every trial",
                f"{item_found:,} of {item_trials:,} = {item_found / item_trials:.4f} "
                f"(95% interval {low:.4f}-{high:.4f})",
            ),
            (
                "sample time per trial (not throttled; file scan and mount excluded)",
                f"median {sorted(seconds)[len(seconds) // 2]:.2f} s",
            ),
            ("preparing the image", f"{prepared:.0f} s"),
        ]
        print("| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        print(f"\nload average at the end: {load_average()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / (1 + z * z / trials)
    return centre - half, centre + half


# -- false hits -------------------------------------------------------------------------------------


def picture(rng: np.random.Generator, width: int, height: int, png: bool) -> bytes:
    """A generated picture: a sky gradient shared by the generator's pictures (the same 16
    palettes), a ground of noise, and rectangles; uncompressed BMP or PNG (zlib)."""
    import struct
    import zlib

    palette = int(rng.integers(0, 16))
    top = np.array([40 + 10 * palette, 90, 200], dtype=np.float64)
    rows = np.linspace(0, 1, height // 2)[:, None]
    sky = (top * (1 - rows) + np.array([230, 230, 250]) * rows).astype(np.uint8)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[: height // 2] = sky[:, None, :]
    image[height // 2 :] = (
        rng.integers(0, 256, size=(height - height // 2, width, 3), dtype=np.uint8) // 4 + 60
    )
    for _ in range(int(rng.integers(2, 6))):
        y, x = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 20))
        image[y : y + int(rng.integers(10, 80)), x : x + int(rng.integers(10, 80))] = rng.integers(0, 256, 3)
    if not png:
        pixels = image[::-1, :, ::-1].tobytes()  # BMP: bottom-up BGR (width * 3 is a multiple of 4 here)
        header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
        header += struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
        return header + pixels
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
    "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you",
    "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if",
    "so", "no", "will", "more", "can",
)  # fmt: skip


def document(rng: np.random.Generator, number: int) -> bytes:
    boilerplate = (b"CONFIDENTIAL - internal use only. Template 7.2 of the records office.\n" * 90)[:6000]
    words = rng.choice(len(WORDS), size=int(rng.integers(2_000, 60_000)))
    body = " ".join(WORDS[int(w)] for w in words).encode()
    return boilerplate + f"Document {number}\n".encode() + body


def write_tree(
    root: Path, rng: np.random.Generator, pictures: int, documents: int, software: list[Path]
) -> int:
    total = 0
    for number in range(pictures):
        data = picture(rng, 1024, 768, png=number % 2 == 1)
        path = root / "Pictures" / f"IMG_{number:05d}.{'png' if number % 2 else 'bmp'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    for number in range(documents):
        data = document(rng, number)
        path = root / "Documents" / f"doc{number:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    for source in software:
        target = root / "Programs" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        sh("cp", "-r", "--no-dereference", source, target, check=False)  # unreadable files: left out
        total += sum(f.stat().st_size for f in target.rglob("*") if f.is_file() and not f.is_symlink())
    return total


def filter_variants(known: Path, corpora: dict[str, Path]) -> dict[str, ContrabandFilterType]:
    """The known items' block set built with each rule added in turn (the first keeps every block;
    patterns make no difference here: the kiosk never looks a pattern block up)."""
    from filters.blocks import BlockCutter, read_common_digests
    from filters.fuse import FuseFilter
    from filters.model import BlockSetInfo, ContrabandFilter, FilterMetadata, FilterSet, derive_keys

    variants: dict[str, ContrabandFilterType] = {}
    files = sorted(p for p in known.rglob("*") if p.is_file())
    salt = os.urandom(32)
    every: list[bytes] = []
    for path in files:
        cutter = BlockCutter()
        cutter.feed(path.read_bytes())
        every += cutter.digests
    keys = np.unique(derive_keys(salt, "block", every))
    meta = FilterMetadata("0" * 32, "every block", "", "", 0, None, None, 3, "bench")
    info = BlockSetInfo(1, len(files), len(files))
    fuse = FuseFilter.build(keys, unique=True)
    raw = FilterSet(0, "block", "known", "priority", int(keys.size), None, fuse, info)
    variants["no rule (every block of every item)"] = ContrabandFilter(meta, salt, [raw])
    for name, corpus in [("patterns and blocks in 2+ items left out", None), *corpora.items()]:
        builder = FilterBuilder(name=name, salt=salt)
        for path in files:
            cutter = BlockCutter()
            data = path.read_bytes()
            cutter.feed(data)
            builder.add_blocks(cutter.item(len(data), "known", "priority"))
        if corpus is not None:
            for digests in read_common_digests(corpus):
                builder.add_common_blocks(digests)
        variants[name] = builder.build_unsigned()
    return variants


ContrabandFilterType = Any


def every_block_hits(image: Path, contraband: ContrabandFilterType) -> tuple[int, int, int]:
    """(blocks looked up, blank blocks, hits): every 4 KiB block of ``image`` (ext4, 4 KiB blocks)."""
    import blake3

    from filters.blocks import is_pattern_block

    looked = blank = hits = 0
    with image.open("rb") as stream:
        while chunk := stream.read(64 * MiB):
            digests = []
            for offset in range(0, len(chunk) - 4095, 4096):
                block = chunk[offset : offset + 4096]
                if is_pattern_block(block):
                    blank += 1
                    continue
                digests.append(blake3.blake3(block).digest())
            looked += len(digests)
            hits += sum(len(indices) for _, indices in contraband.lookup_many("block", digests))
    return looked, blank, hits


def cmd_false_hits(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="ft-blocks-false-", dir=args.work))
    try:
        software = sorted(Path("/usr/lib/python3").glob("dist-packages")) or [Path("/usr/share/doc")]
        lib = Path("/usr/lib/x86_64-linux-gnu")
        known, corpus, clean = work / "known", work / "corpus", work / "clean"
        rng = np.random.default_rng(args.seed)
        for number in range(args.known_pictures):  # the known items: generated pictures and random bytes
            path = known / f"k{number:04d}.{'png' if number % 2 else 'bmp'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(picture(rng, 1024, 768, png=number % 2 == 1))
        for number in range(args.known_random):
            (known / f"r{number:04d}.bin").write_bytes(rng.bytes(int(rng.integers(1, 8)) * MiB + 123))
        small, full = args.pictures // 20, args.pictures // 2
        small_bytes = write_tree(corpus / "small", rng, small, args.documents // 20, [Path("/usr/share/doc")])
        full_bytes = write_tree(corpus / "full", rng, full, args.documents // 2, [Path("/usr/share/doc")])
        clean_bytes = write_tree(clean, rng, args.pictures, args.documents, [lib, *software])
        image = work / "clean.img"
        with image.open("wb") as f:
            f.truncate(int(clean_bytes * 1.25) + 256 * MiB)
        sh("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", clean, image)
        shutil.rmtree(clean)
        corpora = {
            f"and a small common-blocks corpus ({small} pictures, {small_bytes / MiB:.0f} MiB)": corpus
            / "small",
            f"and the common-blocks corpus ({full} pictures, {full_bytes / MiB:.0f} MiB)": corpus / "full",
        }
        variants = filter_variants(known, corpora)
        print(
            f"clean image: {image.stat().st_size / GiB:.2f} GiB ext4 holding {clean_bytes / GiB:.2f} GiB: "
            f"{args.pictures} generated pictures (the known pictures' generator, half BMP, half PNG), "
            f"{args.documents} generated documents, copies of {lib} and {', '.join(map(str, software))}"
        )
        print(
            f"known: {args.known_pictures} generated pictures and {args.known_random} random files; "
            "each corpus: pictures and documents of the same generators (other seeds), /usr/share/doc\n"
        )
        print(
            "| known items' block set | block entries | blocks of the clean image looked up "
            "| false block hits | per million blocks |"
        )
        print("|---|---|---|---|---|")
        for name, contraband in variants.items():
            looked, blank, hits = every_block_hits(image, contraband)
            entries = contraband.block_sets[0].count
            print(
                f"| {name} | {entries:,} | {looked:,} (and {blank:,} blank) | {hits:,} "
                f"| {hits / looked * 1e6:.1f} |"
            )
        print(f"\nload average at the end: {load_average()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- usb --------------------------------------------------------------------------------------------


def cmd_sample_child(args: argparse.Namespace) -> None:
    """Inside the throttled cgroup: the kiosk's block sample of a read-only device (no file scan)."""
    from agent.devices.partitions import read_partition_table
    from agent.scan.blocks import BlockSettings, advise_random, fd_reader, regions_of, sample_device

    contraband = load_filter(args.filter, TrustStore.from_paths([args.public]))
    fd = os.open(args.device, os.O_RDONLY | os.O_CLOEXEC)
    size = os.lseek(fd, 0, os.SEEK_END)
    advise_random(fd)
    read_at = fd_reader(fd)
    started = time.perf_counter()
    table = read_partition_table(read_at, size)
    parts = [(p.number, p.start, p.size, "") for p in table.partitions]
    regions = regions_of(size, parts, read_at)
    settings = BlockSettings(args.target_mib * MiB, args.confidence, args.budget, seed=args.seed)
    result = sample_device(read_at, regions, [contraband], settings)
    print(json.dumps({
        "wall": time.perf_counter() - started, "units": result.units, "sampled": result.units_read,
        "bytes": result.bytes_read, "probability": result.probability, "stopped": result.stopped,
        "blank": result.blank, "hits": len(result.hits),
    }))  # fmt: skip


def cmd_usb(args: argparse.Namespace) -> None:
    import usb_throttle

    print(f"machine: {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="ft-blocks-usb-", dir=args.work))
    rows = []
    try:
        key, public = generate_key_pair(work / "bench")
        items = work / "items"
        items.mkdir()
        (items / "item.jpg").write_bytes(os.urandom(args.target_mib * MiB))
        filter_path = block_filter_of(items, key)
        for gigabytes in args.image_gb:
            image = work / f"fieldtriage-bench-{gigabytes}g.img"
            started = time.perf_counter()
            sparse_ext4(image, gigabytes * GiB)
            made = time.perf_counter() - started
            loop = sh("losetup", "-r", "-f", "--show", image).strip()
            cgroup = usb_throttle.BLKIO / f"ft-blocks-{os.getpid()}"
            try:
                rdev = os.stat(loop).st_rdev
                devno = f"{os.major(rdev)}:{os.minor(rdev)}"
                cgroup.mkdir()
                for iops in args.usb_iops:
                    (cgroup / "blkio.throttle.read_bps_device").write_text(
                        f"{devno} {args.usb_mbps * 10**6}\n"
                    )
                    (cgroup / "blkio.throttle.read_iops_device").write_text(f"{devno} {iops or 0}\n")
                    rate = throttled_rate(loop, cgroup)
                    runs = []
                    for repeat in range(args.repeat):
                        usb_throttle.drop_caches()
                        command = [
                            sys.executable, __file__, "sample-child", loop, str(filter_path), str(public),
                            "--target-mib", str(args.target_mib), "--confidence", str(args.confidence),
                            "--seed", str(repeat + 1),
                        ]  # fmt: skip
                        wrapped = [
                            "sh",
                            "-c",
                            'echo $$ > "$0" && exec "$@"',
                            str(cgroup / "cgroup.procs"),
                            *command,
                        ]
                        runs.append(json.loads(sh(*wrapped)))
                    runs.sort(key=lambda r: r["wall"])
                    median = runs[len(runs) // 2]
                    full = gigabytes * GiB / (rate * 1e6)
                    walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
                    rows.append({
                        "device": f"{gigabytes} GiB sparse ext4 (made in {made:.0f} s)",
                        "throttle": f"{args.usb_mbps} MB/s" + (f", {iops} reads/s" if iops else ""),
                        "measured rate (dd, in the cgroup)": f"{rate:.1f} MB/s",
                        "places / sampled": f"{median['units']:,} / {median['sampled']:,}",
                        "bytes read": f"{median['bytes'] / 1e6:.1f} MB",
                        "**time to the confidence**": (
                            f"**{median['wall']:.1f} s** (P = {median['probability']:.4f}; runs {walls})"
                        ),
                        "full md5sum read at that rate (computed)": (
                            f"{full / 60:.0f} min ({full / median['wall']:.0f}x)"
                        ),
                    })  # fmt: skip
            finally:
                usb_throttle._remove_cgroup(cgroup)
                sh("losetup", "-d", loop, check=False)
                image.unlink()
        print_table(rows)
        print(f"\nload average at the end: {load_average()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def throttled_rate(loop: str, cgroup: Path, megabytes: int = 128) -> float:
    """MB/s of a cold sequential read of the loop device inside the cgroup (``dd``)."""
    import usb_throttle

    usb_throttle.drop_caches()
    command = [
        "dd",
        f"if={loop}",
        "of=/dev/null",
        "bs=1M",
        f"count={megabytes}",
        "iflag=direct",
        "status=none",
    ]
    started = time.perf_counter()
    sh("sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroup / "cgroup.procs", *command)
    return megabytes * MiB / (time.perf_counter() - started) / 1e6


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
    detect = commands.add_parser("detect")
    detect.add_argument("--image-gb", type=int, default=64)
    detect.add_argument("--items", type=int, default=100)
    detect.add_argument("--trials", type=int, default=100)
    detect.add_argument("--target-mib", type=int, default=20)
    detect.add_argument("--confidence", type=float, default=0.99)
    detect.add_argument("--seed", type=int, default=15)
    detect.add_argument("--work", type=Path, default=None)
    detect.set_defaults(handler=cmd_detect)
    false = commands.add_parser("false-hits")
    false.add_argument("--known-pictures", type=int, default=200)
    false.add_argument("--known-random", type=int, default=50)
    false.add_argument("--pictures", type=int, default=1200)
    false.add_argument("--documents", type=int, default=3000)
    false.add_argument("--seed", type=int, default=16)
    false.add_argument("--work", type=Path, default=None)
    false.set_defaults(handler=cmd_false_hits)
    usb = commands.add_parser("usb")
    usb.add_argument("--image-gb", type=int, nargs="+", default=[64])
    usb.add_argument("--usb-mbps", type=int, default=35)
    usb.add_argument("--usb-iops", type=int, nargs="+", default=[0, 1000])
    usb.add_argument("--target-mib", type=int, default=20)
    usb.add_argument("--confidence", type=float, default=0.99)
    usb.add_argument("--repeat", type=int, default=3)
    usb.add_argument("--work", type=Path, default=None)
    usb.set_defaults(handler=cmd_usb)
    child = commands.add_parser("sample-child")
    child.add_argument("device")
    child.add_argument("filter", type=Path)
    child.add_argument("public", type=Path)
    child.add_argument("--target-mib", type=int, default=20)
    child.add_argument("--confidence", type=float, default=0.99)
    child.add_argument("--budget", type=float, default=7200.0)
    child.add_argument("--seed", type=int, default=1)
    child.set_defaults(handler=cmd_sample_child)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
