"""Scan benchmarks, side by side with b3sum and md5sum in one run; prints a table (not a test).

Rows: full-mode throughput with a blake3 set vs ``b3sum`` and with an md5 set vs ``md5sum`` (page
cache warm); files per second on small files; auto mode on a filter covered by sample sets with
caches dropped (bytes read from the device, from /proc/<pid>/io ``read_bytes``, and time to verdict
vs ``md5sum`` over the same tree, also cold); time from start to the first priority hit with one
known photo in a camera folder among many files. Trees are synthetic (``gen_tree.py``), filters
hold digests of generated files and random digests. Dropping caches needs root.

Example::

    python bench/bench_scan.py                      # about 1.4 GB, a few minutes
    python bench/bench_scan.py --layout apps        # the app-heavy phone tree used before 2026-05
    python bench/bench_scan.py --scale 0.3 --write-docs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_tree

from agent.scan import ScanEvent, ScanHit, Scanner
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import DIGEST_SIZES, digest_path
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key

Row = tuple[str, str, str, str, str]


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    b3 = subprocess.run(["b3sum", "--version"], capture_output=True, text=True).stdout.strip() or "no b3sum"
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {b3}, load average {os.getloadavg()[0]:.1f} at start"
    )


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


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
    for name, files in (("covered", photos), ("among", [camera])):
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


def run_child(ftf: Path, pub: Path, root: Path, workers: int | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child-filter", str(ftf), "--child-trust", str(pub)]
    command += ["--child-exec", repr(time.time())]
    command += ["--child-root", str(root)] + (["--workers", str(workers)] if workers else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


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
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
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
    trees = make_trees(args.work, args.scale, args.small, args.among, args.layout)
    filters, pub = make_filters(args.work, trees)
    phone_bytes = sum(p.stat().st_size for p in trees["phone"].rglob("*") if p.is_file())
    small_files = sum(1 for p in trees["small"].rglob("*") if p.is_file()) - 1
    rows: list[Row] = []
    for root in trees.values():
        warm(root)

    for kind, tool in (("blake3", "b3sum"), ("md5", "md5sum")):
        ours = best(
            [
                scan_time(filters[kind], pub, trees["phone"], "full", args.workers)[0]
                for _ in range(args.repeat)
            ]
        )
        theirs = best([tool_time(tool, trees["phone"]) for _ in range(args.repeat)])
        target = "\u2265 0.9x"
        ratio = theirs / ours
        rows.append(
            (f"full, {kind} set, phone tree ({args.layout}) {phone_bytes / 1e9:.2f} GB, warm",
             f"{phone_bytes / ours / 1e6:.0f} MB/s", f"{tool} {phone_bytes / theirs / 1e6:.0f} MB/s",
             f"{ratio:.2f}x", target)
        )  # fmt: skip
        ours = best(
            [
                scan_time(filters[kind], pub, trees["small"], "full", args.workers)[0]
                for _ in range(args.repeat)
            ]
        )
        theirs = best([tool_time(tool, trees["small"]) for _ in range(args.repeat)])
        rows.append(
            (f"full, {kind} set, {small_files:,} small files, warm", f"{small_files / ours:,.0f} files/s",
             f"{tool} {small_files / theirs:,.0f} files/s", f"{theirs / ours:.2f}x", "\u2265 0.8x")
        )  # fmt: skip

    cold = drop_caches()
    auto = run_child(filters["covered"], pub, trees["phone"], args.workers)
    drop_caches()
    md5_cold = tool_time("md5sum", trees["phone"])
    fraction = auto["read_bytes"] / phone_bytes
    label = "cold" if cold else "WARM (could not drop caches)"
    rows.append(
        (f"auto, covered filter, phone tree ({args.layout}), bytes read ({label})",
         f"{auto['read_bytes'] / 1e6:.1f} MB ({fraction * 100:.2f}%)", f"tree {phone_bytes / 1e6:.0f} MB",
         f"{auto['verdict']}", "\u2264 2%")
    )  # fmt: skip
    rows.append(
        (f"auto, covered filter, time to verdict ({label}; with interpreter start)",
         f"{auto['elapsed']:.2f} s ({auto['since_exec']:.2f} s)", f"md5sum {md5_cold:.2f} s",
         f"{md5_cold / auto['elapsed']:.1f}x ({md5_cold / auto['since_exec']:.1f}x) shorter", "\u2265 20x")
    )  # fmt: skip
    drop_caches()
    among_cold = run_child(filters["among"], pub, trees["among"], args.workers)
    among_warm = run_child(filters["among"], pub, trees["among"], args.workers)
    rows.append(
        (f"first priority hit, 1 photo among {args.among:,} files, from filter load ({label})",
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
        f"--among {args.among}"
    )
    section = (
        f"## Scanning\n\nMeasured with `{command}` (workers: {args.workers or 'engine default'}).\n\n"
        f"Machine: {about}.\n\n{table}\n\nBytes read in auto mode are the device reads of the scanning "
        f"process (`/proc/<pid>/io` `read_bytes`: {auto['read_bytes']:,}); its `rchar` (read system calls, "
        f"including the filter file and Python's own imports) was {auto['rchar']:,} and the engine's own "
        f"count {auto['engine_bytes_read']:,}.\n\n{notes}"
    )
    pattern = re.compile(r"^## Scanning\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    )
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
