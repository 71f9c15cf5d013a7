"""Scan benchmarks, side by side with b3sum and md5sum in one run; prints a table (not a test).

Rows: full-mode throughput with a blake3 set vs ``b3sum`` and with an md5 set vs ``md5sum`` (page
cache warm); files per second on small files; auto mode on a filter covered by sample sets with
caches dropped (bytes read from the device, from /proc/<pid>/io ``read_bytes``, and time to verdict
vs ``md5sum`` over the same tree, also cold); time from start to the first priority hit with one
known photo in a camera folder among many files. Trees are synthetic (``gen_tree.py``), filters
hold digests of generated files and random digests. Dropping caches needs root.

``--usb-mbps N`` measures auto mode and ``md5sum`` on USB-speed media instead (and nothing else):
the phone tree and the camera tree go into an ext4 image (``mkfs.ext4 -d``), attached read-only
(``losetup -r``), mounted ``ro,noload``; reads from that loop device are throttled to N MB/s (10^6
bytes) with a cgroup v1 blkio ``read_bps_device`` limit, and every measured process runs inside the
cgroup, each after dropping caches (see ``usb_throttle.py``). Bytes read are counted at the loop
device (sectors read, with metadata and readahead) and for the process (``ru_inblock``).

Example::

    python bench/bench_scan.py                      # about 1.4 GB, a few minutes
    python bench/bench_scan.py --layout apps        # the app-heavy phone tree used before 2026-05
    python bench/bench_scan.py --scale 0.3 --write-docs
    python bench/bench_scan.py --usb-mbps 35 --write-docs   # USB 2.0 stick speed, about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from machine_info import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_tree
import usb_throttle

from agent.scan import ScanEvent, ScanHit, Scanner
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import DIGEST_SIZES, digest_path
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key

Row = tuple[str, str, str, str, str]


def machine() -> str:
    model = cpu_model()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    b3 = subprocess.run(["b3sum", "--version"], capture_output=True, text=True).stdout.strip() or "no b3sum"
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {b3}, load average {os.getloadavg()[0]:.1f} at start"
    )


def tool_time(tool: str, root: Path) -> float:
    started = time.perf_counter()
    find = subprocess.Popen(["find", str(root), "-type", "f", "-print0"], stdout=subprocess.PIPE)
    subprocess.run(["xargs", "-0", tool], stdin=find.stdout, stdout=subprocess.DEVNULL, check=True)
    find.wait()
    return time.perf_counter() - started


def warm(root: Path) -> None:
    tool_time("cat", root)


def make_trees(work: Path, scale: float, small: int, among: int, layout: str) -> dict[str, Path]:
    trees = {
        "phone": work / (f"phone-{scale}" if layout == "apps" else f"phone-{layout}-{scale}"),
        "small": work / f"small-{small}",
        "among": work / f"among-{among}",
    }
    for name, root in trees.items():
        if (root / ".done").exists():
            continue
        shutil.rmtree(root, ignore_errors=True)
        writer = gen_tree.Writer(root, 2026)
        if name == "phone":
            gen_tree.phone(writer, scale, layout)
        elif name == "small":
            gen_tree.small(writer, small)
        else:
            gen_tree.camera_among(writer, among)
        (root / ".done").write_text("")
    return trees


def make_filters(work: Path, trees: dict[str, Path]) -> tuple[dict[str, Path], Path]:
    folder = work / "filters"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    key, pub = generate_key_pair(folder / "bench")
    signing = load_private_key(key)
    made = {}
    for kind in ("blake3", "md5"):  # random digests: nothing matches, every file is read whole
        builder = FilterBuilder(name=f"random-{kind}")
        for _ in range(10_000):
            builder.add(DigestEntry(kind, os.urandom(DIGEST_SIZES[kind]), "known", "priority"))
        made[kind] = folder / f"{kind}.ftf"
        write_filter(made[kind], builder.build_unsigned(), signing)
    photos = sorted((trees["phone"] / "DCIM" / "Camera").glob("IMG_*.jpg"))[-2:]
    camera = next((trees["among"] / "DCIM" / "Camera").glob("*.jpg"))
    elsewhere = folder / "not-on-the-device"  # a covered filter whose items no tree holds
    elsewhere.mkdir()
    absent = [elsewhere / f"IMG_{n}.jpg" for n in range(2)]
    for n, file in enumerate(absent):
        file.write_bytes(random.Random(n).randbytes(3_000_000))
    for name, files in (("covered", photos), ("among", [camera]), ("clean", absent)):
        builder = FilterBuilder(name=name)
        for file in files:
            for kind, digest in digest_path(file, ("sample", "blake3")).items():
                builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
        made[name] = folder / f"{name}.ftf"
        write_filter(made[name], builder.build_unsigned(), signing)
    return made, pub


def scan_time(
    ftf: Path, pub: Path, root: Path, mode: str, workers: int | None
) -> tuple[float, int, int, str]:
    started = time.perf_counter()
    scanner = Scanner([load_filter(ftf, TrustStore.from_paths([pub]))], mode=mode, workers=workers)  # type: ignore[arg-type]
    report = scanner.scan([root])
    return time.perf_counter() - started, report.counts.bytes_read, report.counts.files_read, report.verdict


def _proc_io() -> dict[str, int]:
    pairs = (line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {k: int(v) for k, v in pairs}


def child(args: argparse.Namespace) -> int:
    """Runs in its own process so that /proc/self/io counts this scan only."""
    started = time.perf_counter()
    io_before = _proc_io()
    first: list[float] = []

    def on_event(event: ScanEvent) -> None:
        if isinstance(event, ScanHit) and event.hit.priority and not first:
            first.append(time.perf_counter() - started)

    contraband = load_filter(args.child_filter, TrustStore.from_paths([args.child_trust]))
    report = Scanner([contraband], mode="auto", workers=args.workers).scan([args.child_root], on_event)
    elapsed = time.perf_counter() - started
    io = _proc_io()
    result = {
        "elapsed": elapsed,
        "since_exec": time.time() - args.child_exec,
        "first_priority_hit": first[0] if first else None,
        "verdict": report.verdict,
        "read_bytes": io["read_bytes"] - io_before["read_bytes"],
        "rchar": io["rchar"] - io_before["rchar"],
        "engine_bytes_read": report.counts.bytes_read,
        "bytes_seen": report.counts.bytes_seen,
    }
    print(json.dumps(result))
    return 0


def child_command(ftf: Path, pub: Path, root: Path, workers: int | None) -> list[str]:
    command = [sys.executable, __file__, "--child-filter", str(ftf), "--child-trust", str(pub)]
    command += ["--child-exec", repr(time.time())]
    return command + ["--child-root", str(root)] + (["--workers", str(workers)] if workers else [])


def run_child(ftf: Path, pub: Path, root: Path, workers: int | None) -> dict[str, float]:
    command = child_command(ftf, pub, root, workers)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def full_scan_time(ftf: Path, pub: Path, root: Path, workers: int | None) -> float:
    return scan_time(ftf, pub, root, "full", workers)[0]


def side_by_side(
    ours: list[Callable[[], float]], theirs: Callable[[], float], repeat: int
) -> tuple[list[float], float]:
    """Best times of each of ``ours`` and of ``theirs``, run interleaved (this VM's speed drifts)."""
    mine: list[list[float]] = [[] for _ in ours]
    reference: list[float] = []
    for _ in range(repeat):
        for times, run in zip(mine, ours, strict=True):
            times.append(run())
        reference.append(theirs())
    return [best(times) for times in mine], best(reference)


def best(times: list[float]) -> float:
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ft-bench"))
    parser.add_argument("--scale", type=float, default=1.0, help="phone tree size, 1.0 is about 1.3-1.4 GB")
    parser.add_argument("--layout", choices=gen_tree.LAYOUTS, default="media", help="phone tree layout")
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--among", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=None, help="default: the engine's choice")
    parser.add_argument("--repeat", type=int, default=2, help="warm runs per row (best is kept)")
    parser.add_argument(
        "--full-workers",
        type=lambda text: [int(w) if w != "default" else None for w in text.split(",")],
        default=None,
        metavar="LIST",
        help="full-mode rows for each of these worker counts, side by side (e.g. default,2)",
    )
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    usb_help = "only measure auto mode and md5sum on a loop device throttled to N MB/s (root)"
    parser.add_argument("--usb-mbps", type=float, default=None, metavar="N", help=usb_help)
    parser.add_argument(
        "--usb-iops", type=int, default=0, metavar="N", help="also limit reads to N per second"
    )
    parser.add_argument("--usb-runs", type=int, default=3, help="throttled auto scans (the median is kept)")
    parser.add_argument("--child-filter", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-trust", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-exec", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_filter:
        return child(args)
    if not shutil.which("b3sum"):
        print("b3sum is missing: apt-get install -y b3sum", file=sys.stderr)
        return 2
    about = machine()
    print(about)
    if args.usb_mbps:
        return usb(args, about)
    trees = make_trees(args.work, args.scale, args.small, args.among, args.layout)
    filters, pub = make_filters(args.work, trees)
    phone_bytes = sum(p.stat().st_size for p in trees["phone"].rglob("*") if p.is_file())
    small_files = sum(1 for p in trees["small"].rglob("*") if p.is_file()) - 1
    rows: list[Row] = []
    for root in trees.values():
        warm(root)

    counts = args.full_workers or [args.workers]
    for kind, tool in (("blake3", "b3sum"), ("md5", "md5sum")):
        for tree in ("phone", "small"):
            root = trees[tree]
            ours, theirs = side_by_side(
                [partial(full_scan_time, filters[kind], pub, root, w) for w in counts],
                partial(tool_time, tool, root),
                args.repeat,
            )
            phone = tree == "phone"
            label = (
                f"phone tree ({args.layout}) {phone_bytes / 1e9:.2f} GB"
                if phone
                else f"{small_files:,} small files"
            )
            for w, mine in zip(counts, ours, strict=True):
                who = f", workers {w or 'default'}" if args.full_workers else ""
                if phone:
                    speed, ref = phone_bytes / mine / 1e6, phone_bytes / theirs / 1e6
                    speed_text, ref_text = f"{speed:.0f} MB/s", f"{tool} {ref:.0f} MB/s"
                else:
                    speed_text, ref_text = (
                        f"{small_files / mine:,.0f} files/s",
                        f"{tool} {small_files / theirs:,.0f} files/s",
                    )
                target = "\u2265 0.9x" if phone else "\u2265 0.8x"
                ratio = f"{theirs / mine:.2f}x"
                rows.append((f"full, {kind} set, {label}, warm{who}", speed_text, ref_text, ratio, target))

    cold = usb_throttle.drop_caches()
    auto = run_child(filters["covered"], pub, trees["phone"], args.workers)
    usb_throttle.drop_caches()
    md5_cold = tool_time("md5sum", trees["phone"])
    fraction = auto["read_bytes"] / phone_bytes
    cache = "cold" if cold else "WARM (could not drop caches)"
    rows.append(
        (f"auto, covered filter, phone tree ({args.layout}), bytes read ({cache})",
         f"{auto['read_bytes'] / 1e6:.1f} MB ({fraction * 100:.2f}%)", f"tree {phone_bytes / 1e6:.0f} MB",
         f"{auto['verdict']}", "\u2264 2%")
    )  # fmt: skip
    rows.append(
        (f"auto, covered filter, time to verdict ({cache}; with interpreter start)",
         f"{auto['elapsed']:.2f} s ({auto['since_exec']:.2f} s)", f"md5sum {md5_cold:.2f} s",
         f"{md5_cold / auto['elapsed']:.1f}x ({md5_cold / auto['since_exec']:.1f}x) shorter", "\u2265 20x")
    )  # fmt: skip
    usb_throttle.drop_caches()
    among_cold = run_child(filters["among"], pub, trees["among"], args.workers)
    among_warm = run_child(filters["among"], pub, trees["among"], args.workers)
    rows.append(
        (f"first priority hit, 1 photo among {args.among:,} files, from filter load ({cache})",
         f"{among_cold['first_priority_hit']:.3f} s", f"warm {among_warm['first_priority_hit']:.3f} s",
         f"verdict in {among_cold['elapsed']:.2f} s", "< 1 s")
    )  # fmt: skip

    table = render(rows)
    print(table)
    print(
        f"auto: read_bytes {auto['read_bytes']:,}, rchar {auto['rchar']:,}, "
        f"engine {auto['engine_bytes_read']:,}"
    )
    if args.write_docs:
        write_docs(about, table, auto, args)
    return 0


USB_HEADING = "### On USB-speed media (throttled)"
USB_PATTERN = re.compile(r"^### On USB-speed media \(throttled\)\n.*?(?=^## |\Z)", re.S | re.M)
USB_CAVEATS = """\
* The throttle limits bandwidth only. A real stick also costs time per request (flash page reads,
  a USB mass-storage command round trip, no command queueing on most sticks: roughly 0.3-1 ms for a
  small random read), while this loop device answers from the host's cache in microseconds. md5sum reads large
  files in order, so its time is close to a real stick's; auto mode makes thousands of small reads
  (4 KiB sample blocks, small files whole, inodes and directories), so its time here is a lower bound
  and the ratio an upper bound. `--usb-iops N` adds a per-second request limit to approximate that;
  a request limit was not calibrated against a real stick.
* Bytes read at the loop device include ext4 metadata and readahead (128 KiB `read_ahead_kb` on the
  loop device, as on a USB disk); the engine's own count excludes both. The process counter
  (`read_bytes`) counts every block read the process submitted from filter load on, including any
  from the root disk (the filter file, modules imported lazily during the scan); for a whole
  `fieldtriage scan` process it also counts the cold interpreter and libraries. The device counter
  is the one compared with the target.
* The loop device reports `rotational` = 1 (as USB sticks usually do), so the engine reads with one
  worker. The tree is synthetic (`bench/gen_tree.py`, media layout), not a seized phone.
"""


def median_run(runs: list[usb_throttle.Run]) -> usb_throttle.Run:
    return sorted(runs, key=lambda run: run.wall)[len(runs) // 2]


def usb(args: argparse.Namespace, about: str) -> int:
    """Auto mode and md5sum over the phone tree on a loop device throttled to --usb-mbps MB/s."""
    fieldtriage = Path(sys.executable).with_name("fieldtriage")
    if not fieldtriage.exists():
        fieldtriage = Path(shutil.which("fieldtriage") or "fieldtriage")
    trees = make_trees(args.work, args.scale, args.small, args.among, args.layout)
    filters, pub = make_filters(args.work, trees)
    phone_files = [p for p in trees["phone"].rglob("*") if p.is_file() and p.name != ".done"]
    phone_bytes = sum(p.stat().st_size for p in phone_files)
    mbps = args.usb_mbps
    workers = ["--workers", str(args.workers)] if args.workers else []

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the cleanup

    signal.signal(signal.SIGTERM, on_term)
    sources = {"phone": trees["phone"], "among": trees["among"]}
    with usb_throttle.ThrottledImage(sources, args.work, int(mbps * 1e6), args.usb_iops) as image:
        print(f"image {image.image_bytes / 1e6:.0f} MB on {image.device} ({image.devno}) at {image.mount}")
        phone = image.mount / "phone"
        video = max((phone / "DCIM" / "Camera").glob("VID_*.mp4"), key=lambda p: p.stat().st_size)
        dd_mib = min(100, video.stat().st_size >> 20)
        dd_mbps, dd_free = image.check(video, dd_mib)
        print(f"throttle check: dd cold in the cgroup {dd_mbps:.1f} MB/s, outside {dd_free:.0f} MB/s")
        if dd_mbps > 1.25 * mbps:
            print(f"the throttle does not hold ({dd_mbps:.1f} MB/s > {mbps} MB/s): not measuring",
                  file=sys.stderr)  # fmt: skip
            return 2
        md5 = ["sh", "-c", 'find "$0" -type f -print0 | xargs -0 md5sum > /dev/null', str(phone)]
        scan = [str(fieldtriage), "scan", "--mode", "auto", "--json", "--filter", str(filters["covered"])]
        scan += ["--trust", str(pub), *workers, str(phone)]
        md5_run = image.run(md5)
        if md5_run.returncode != 0:
            raise RuntimeError(f"md5sum failed: {md5_run.returncode}")
        print(f"md5sum: {md5_run.wall:.2f} s, device {md5_run.device_bytes / 1e6:.1f} MB")
        scans = []
        for _ in range(max(1, args.usb_runs)):
            scans.append(image.run(scan))
            last = scans[-1]
            verdict = json.loads(last.stdout)["verdict"]
            print(
                f"fieldtriage scan: {last.wall:.2f} s, device {last.device_bytes / 1e6:.1f} MB, "
                f"process {last.inblock_bytes / 1e6:.1f} MB, exit {last.returncode}, {verdict}"
            )
        clean_scan = [*scan[:6], str(filters["clean"]), *scan[7:]]
        cleans = [image.run(clean_scan) for _ in range(max(1, args.usb_runs))]
        clean_detail_run = image.run(child_command(filters["clean"], pub, phone, args.workers))
        clean_detail = json.loads(clean_detail_run.stdout.strip().splitlines()[-1])
        detail_run = image.run(child_command(filters["covered"], pub, phone, args.workers))
        detail = json.loads(detail_run.stdout.strip().splitlines()[-1])
        among_run = image.run(child_command(filters["among"], pub, image.mount / "among", args.workers))
        among = json.loads(among_run.stdout.strip().splitlines()[-1])
        md5_free = image.run(md5, throttled=False)
        scan_free = image.run(scan, throttled=False)

    mid = median_run(scans)
    report = json.loads(mid.stdout)
    clean = median_run(cleans)
    clean_verdict = json.loads(clean.stdout)["verdict"]
    clean_share = clean.device_bytes / phone_bytes
    walls = sorted(run.wall for run in scans)
    spread = f", {walls[0]:.2f}-{walls[-1]:.2f} s" if len(walls) > 1 else ""
    ratio = md5_run.wall / mid.wall
    ratio_in = md5_run.wall / detail["elapsed"]
    device_share = mid.device_bytes / phone_bytes
    process_share = detail["read_bytes"] / phone_bytes
    md5_mbps = phone_bytes / md5_run.wall / 1e6
    limit = f"{mbps:g} MB/s" + (f", {args.usb_iops} reads/s" if args.usb_iops else "")
    gb = f"{phone_bytes / 1e9:.2f} GB, {len(phone_files):,} files"
    rows: list[Row] = [
        (f"throttle check: dd {dd_mib} MiB of one video, cold, in the cgroup",
         f"{dd_mbps:.1f} MB/s", f"outside the cgroup {dd_free:.0f} MB/s", f"limit {limit}", "\u2248 limit"),
        (f"auto, covered filter, phone tree ({args.layout}, {gb}), time to verdict: in-process from filter "
         f"load (`fieldtriage scan` process wall time, cold interpreter, median of {len(scans)}{spread})",
         f"{detail['elapsed']:.2f} s ({mid.wall:.2f} s)",
         f"md5sum {md5_run.wall:.2f} s ({md5_mbps:.1f} MB/s)",
         f"{ratio_in:.1f}x ({ratio:.1f}x) shorter", "\u2265 20x"),
        ("auto, bytes read at the loop device (sectors read: data, metadata, readahead; median run)",
         f"{mid.device_bytes / 1e6:.1f} MB ({device_share * 100:.2f}%)",
         f"tree {phone_bytes / 1e6:.0f} MB (md5sum: {md5_run.device_bytes / 1e6:.0f} MB at the device)",
         report["verdict"], "\u2264 2%"),
        ("auto, bytes read by the scanning process from filter load (`/proc/self/io` `read_bytes`)",
         f"{detail['read_bytes'] / 1e6:.1f} MB ({process_share * 100:.2f}%)",
         f"engine's own count {detail['engine_bytes_read'] / 1e6:.1f} MB",
         detail["verdict"], "\u2264 2%"),
        ("auto, clean device (a covered filter of 2 photos the tree does not hold): time to verdict "
         f"in-process from filter load (`fieldtriage scan` process, median of {len(cleans)})",
         f"{clean_detail['elapsed']:.2f} s ({clean.wall:.2f} s)", f"md5sum {md5_run.wall:.2f} s",
         f"{md5_run.wall / clean_detail['elapsed']:.1f}x ({md5_run.wall / clean.wall:.1f}x) shorter",
         "\u2265 20x"),
        ("auto, clean device: bytes read at the loop device (median run)",
         f"{clean.device_bytes / 1e6:.1f} MB ({clean_share * 100:.2f}%)",
         f"engine's own count {clean_detail['engine_bytes_read'] / 1e6:.1f} MB",
         clean_verdict, "\u2264 2%"),
        ("first priority hit, phone tree (filter: 2 camera photos), from filter load",
         f"{detail['first_priority_hit']:.3f} s", f"verdict in {detail['elapsed']:.2f} s",
         detail["verdict"], "< 1 s"),
        (f"first priority hit, 1 photo among {args.among:,} files, from filter load",
         f"{among['first_priority_hit']:.3f} s",
         f"verdict in {among['elapsed']:.2f} s ({among_run.device_bytes / 1e6:.1f} MB at the device)",
         among["verdict"], "< 1 s"),
        ("same image, not throttled (loop file served from the host's cache), cold: time to verdict "
         "(`fieldtriage scan` process)",
         f"{scan_free.wall:.2f} s", f"md5sum {md5_free.wall:.2f} s",
         f"{md5_free.wall / scan_free.wall:.1f}x shorter", "(context)"),
    ]  # fmt: skip
    table = render(rows)
    print(table)
    details = (
        "The in-process figures come from a `bench_scan.py` child run in the cgroup (imports done, then "
        f"filter load and scan): {detail['read_bytes']:,} bytes of block reads (`read_bytes`; `rchar` "
        f"{detail['rchar']:,}; engine {detail['engine_bytes_read']:,}), {detail_run.device_bytes:,} bytes at "
        f"the device. The median `fieldtriage scan` run: {mid.device_bytes:,} bytes at the device, "
        f"{mid.cgroup_bytes:,} in the cgroup's own count (`blkio.throttle.io_service_bytes`), and "
        f"{mid.inblock_bytes:,} bytes of block reads for the whole process (`ru_inblock` x 512), which "
        "includes the cold interpreter and libraries read from the root disk."
    )
    print(details)
    verdict_20x = "met" if ratio >= 20 else "met in-process only" if ratio_in >= 20 else "missed"
    verdict_2 = "met" if device_share <= 0.02 else "missed"
    verdict_2_clean = "met" if clean_share <= 0.02 else "missed"
    floor = mid.device_bytes / (mbps * 1e6)
    notes = (
        f"* **Time to verdict at {limit}: {ratio_in:.1f}x shorter than md5sum in-process, {ratio:.1f}x "
        f"with a cold interpreter (target 20x): {verdict_20x}.** md5sum is I/O bound here ({md5_mbps:.1f} "
        f"MB/s against a {mbps:g} MB/s limit). Auto mode needs {mid.device_bytes / 1e6:.0f} MB from the "
        f"device, at least {floor:.2f} s at this speed, so its time is set by the bytes it reads: 20x "
        f"needs at most ~{100 / 20:.0f}% of the tree read, before any CPU or latency. The kiosk's daemon "
        "has its interpreter loaded when a device is plugged in, so the in-process figure is the closer "
        "one; the process figure adds a cold Python start from the root disk.\n"
        f"* **Bytes read: {device_share * 100:.2f}% at the device, {process_share * 100:.2f}% for the "
        f"process (target 2%): {verdict_2}.** The throttle does not change what is read. Of the "
        f"engine's {detail['engine_bytes_read'] / 1e6:.1f} MB, the two known photos read whole to confirm "
        "their sample hits are part: auto mode reads a whole file only for that.\n"
        f"* **Clean device (no known item on it, the common case): {clean_share * 100:.2f}% of the tree "
        f"read at the device, {md5_run.wall / clean_detail['elapsed']:.1f}x shorter than md5sum "
        f"in-process: 2% {verdict_2_clean}.** This is the sampling cost alone.\n"
    )
    if args.write_docs:
        write_usb_docs(about, table, details, notes + USB_CAVEATS, args)
    return 0


def write_usb_docs(about: str, table: str, details: str, notes: str, args: argparse.Namespace) -> None:
    """Replace (or append) the USB subsection at the end of the Scanning section, nothing else."""
    path = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
    text = path.read_text()
    scanning = re.compile(r"^## Scanning\n.*?(?=^## |\Z)", re.S | re.M).search(text)
    if not scanning:
        print(f"{path}: no '## Scanning' section, not written", file=sys.stderr)
        return
    command = (
        f"python bench/bench_scan.py --usb-mbps {args.usb_mbps:g} --scale {args.scale} --layout {args.layout}"
    )
    command += f" --among {args.among}" + (f" --usb-iops {args.usb_iops}" if args.usb_iops else "")
    command += f" --usb-runs {args.usb_runs}"
    subsection = (
        f"{USB_HEADING}\n\nMeasured with `{command}` (workers: {args.workers or 'engine default'}).\n\n"
        f"Machine: {about}.\n\n"
        "Method: the phone tree and the camera tree are put in an ext4 image with `mkfs.ext4 -d` (no "
        "mount), attached with `losetup -r` and mounted `ro,noload`. A cgroup v1 blkio group limits reads "
        f"from that loop device (`blkio.throttle.read_bps_device` = {args.usb_mbps * 1e6:,.0f} bytes/s"
        + (f", `read_iops_device` = {args.usb_iops}" if args.usb_iops else "")
        + "). Every measured command runs inside the group (a `sh` wrapper writes its pid to "
        "`cgroup.procs` and `exec`s the command, so `find`, `xargs` and `md5sum` are all throttled), each "
        "after `echo 3 > /proc/sys/vm/drop_caches`. The reference is `find phone -type f -print0 | xargs "
        "-0 md5sum`; the scan is `fieldtriage scan --mode auto --json` with a filter whose sets are "
        "covered by sample sets (two camera photos, as above). Two times are given for the scan: in-process "
        "from filter load to verdict (a `bench_scan.py` child in the cgroup, imports already done, as in "
        "the kiosk's running daemon), and the `fieldtriage scan` process wall time from spawn to exit "
        "(a cold Python start from the root disk included). The throttle is checked first with `dd`; "
        "buffered reads are throttled (cgroup v1 throttles reads in the reading task).\n\n"
        f"{table}\n\n{details}\n\nNotes (honest):\n\n{notes}"
    )
    body = scanning.group(0)
    old = USB_PATTERN.search(body)
    body = (body[: old.start()] if old else body).rstrip("\n") + "\n\n" + subsection.rstrip("\n") + "\n\n"
    path.write_text(text[: scanning.start()] + body + text[scanning.end() :])
    print(f"wrote {path}")


def render(rows: list[Row]) -> str:
    header = ("measurement", "fieldtriage scan", "reference", "ratio / result", "target")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_docs(about: str, table: str, auto: dict[str, float], args: argparse.Namespace) -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
    text = path.read_text() if path.exists() else "# Performance\n"
    notes = (
        Path(__file__).with_name("scan_notes.md").read_text()
        if Path(__file__).with_name("scan_notes.md").exists()
        else ""
    )
    command = (
        f"python bench/bench_scan.py --scale {args.scale} --layout {args.layout} --small {args.small} "
        f"--among {args.among} --repeat {args.repeat}"
        + (
            f" --full-workers {','.join(str(w or 'default') for w in args.full_workers)}"
            if args.full_workers
            else ""
        )
    )
    section = (
        f"## Scanning\n\nMeasured with `{command}` (other rows' workers: {args.workers or 'engine default'}; "
        "warm rows: ours and the reference interleaved, best of each).\n\n"
        f"Machine: {about}.\n\n{table}\n\nBytes read in auto mode are the device reads of the scanning "
        f"process (`/proc/<pid>/io` `read_bytes`: {auto['read_bytes']:,}); its `rchar` (read system calls, "
        f"including the filter file and Python's own imports) was {auto['rchar']:,} and the engine's own "
        f"count {auto['engine_bytes_read']:,}.\n\n{notes}"
    )
    pattern = re.compile(r"^## Scanning\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    usb_part = USB_PATTERN.search(found.group(0)) if found else None
    if usb_part:  # keep the throttled measurement, written by --usb-mbps
        section = section.rstrip("\n") + "\n\n" + usb_part.group(0).rstrip("\n") + "\n\n"
    text = pattern.sub(lambda _: section, text) if found else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
