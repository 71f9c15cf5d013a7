"""Journal soak: the real writer SIGKILLed at 1,000 random points on one journal folder, then an
export and a station import. Every reopen must succeed and every acknowledged record (reported by
the writer only after ``append`` returned) must be imported.

Run: ``.venv/bin/python bench/soak_journal.py [--kills 1000] [--seed 1] [--folder DIR]``.
``--folder`` picks the filesystem (default: a temporary folder). The kill loop is
tests/agent/journal/power_cut.py (the suite runs it 200 times). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import machine_line

from agent.journal.segment_format import parse_header
from agent.journal.sync import export_segments
from agent.journal.tail import segment_files
from station.home import StationHome
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import enroll
from tests.agent.journal.power_cut import run_driver


def filesystem(folder: Path) -> str:
    """``/tmp (ext4)``: the mount point and type of the filesystem holding ``folder``."""
    done = subprocess.run(
        ["findmnt", "--noheadings", "--output", "TARGET,FSTYPE", "--target", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    target, _, kind = done.stdout.strip().partition(" ")
    return f"{target} ({kind.strip()})" if done.returncode == 0 else str(folder)


def header_counts(folder: Path) -> dict[str, int]:
    """What the segment headers say about the segments before them."""
    counts = {"segments": 0, "left_open": 0, "torn": 0, "preamble_only": 0}
    for _, path in segment_files(folder):
        with path.open("rb") as f:
            header = parse_header(memoryview(f.read(8192)))
        counts["segments"] += 1
        if header.number and not header.previous_sealed:
            counts["left_open"] += 1
            counts["torn"] += header.previous_torn_bytes > 0
            counts["preamble_only"] += header.previous_records == 0 and header.previous_torn_bytes == 0
    return counts


def soak(root: Path, kills: int, seed: int) -> list[str]:
    home = StationHome(root / "station")
    home.init()
    journal = root / "journal"
    started = time.monotonic()
    run = run_driver(journal, root / "device.key", home.journal_public_path, kills, seed)
    killing = time.monotonic() - started
    export_segments(journal, root / "stick")
    enroll(home, root / "device.key")  # only an enrolled kiosk's journal imports
    summary = import_sources(home, [root / "stick"])
    store = Store.open(home.database_path)
    imported = {str(body_from_json(b).get("id")) for (b,) in store.query("SELECT body FROM records")}
    store.close()
    total = time.monotonic() - started
    missing = set(run.acknowledged) - imported
    alarms = [f for f in summary.findings if f.severity == "alarm"]
    counts = header_counts(journal)
    size = sum(path.stat().st_size for _, path in segment_files(journal))
    return [
        f"Machine: {machine_line(f'journal on {filesystem(root)}')}",
        "",
        "| kills | reopen failures | acknowledged records | missing | torn tails set aside "
        "| preamble-only segments set aside | segments left open | station alarms | time |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {run.kills:,} | {len(run.reopen_failures)} | {len(run.acknowledged):,} | {len(missing)} "
        f"| {counts['torn']} | {counts['preamble_only']} | {counts['left_open']} | {len(alarms)} "
        f"| {killing:.1f} s kills + {total - killing:.1f} s export and import |",
        "",
        f"{counts['segments']:,} segments, {size / 1e6:.1f} MB; unexpected exits: "
        f"{len(run.unexpected_exits)}; first reopen failure: "
        f"{run.reopen_failures[0] if run.reopen_failures else 'none'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", type=Path, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.folder, prefix="soak-") as folder:
        print("\n".join(soak(Path(folder), args.kills, args.seed)))


if __name__ == "__main__":
    main()
