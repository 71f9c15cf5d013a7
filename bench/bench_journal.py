"""Journal benchmarks: appends per second with fdatasync, the cost of each step of an append,
journal bytes per scan, and the station's import rate.

Run: ``.venv/bin/python bench/bench_journal.py [--records 2000] [--folder DIR]``. ``--folder`` picks
the filesystem measured (default: a temporary folder). Records are synthetic. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blake3
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from machine_info import machine_line

from agent.journal import EncryptedJournal, PlainJournal
from agent.journal.records import scan_finished_record, scan_started_record
from agent.journal.tail import segment_files
from station.home import StationHome
from station.importer import import_sources
from tests.agent.journal.helpers import enroll


def machine(folder: Path) -> str:
    return machine_line(f"journal on {folder}")


def typical_scan(number: int) -> list[dict[str, object]]:
    """A scan with 3 hits and 10 errors, as the daemon journals it (started, lights, finished)."""
    hits = [
        {
            "path": f"/DCIM/Camera/IMG_{number:04d}_{i}.jpg",
            "path_b64": "",
            "size": 2_345_678,
            "priority": True,
            "confirmed": True,
            "categories": ["vics-1"],
            "matches": [
                {
                    "filter_id": "0" * 32,
                    "filter_name": "synthetic",
                    "set": 0,
                    "kind": "md5",
                    "category": "vics-1",
                    "priority": "priority",
                    "digest": "ab" * 16,
                }
            ],
            "digests": {"md5": "ab" * 16, "sha1": "cd" * 20, "blake3": "ef" * 32, "sample": "12" * 32},
        }
        for i in range(3)
    ]
    errors = [
        {
            "path": f"/Android/data/app{i}/cache/file.bin",
            "path_b64": "",
            "code": "EIO",
            "reason": "Input/output error",
        }
        for i in range(10)
    ]
    report = {
        "verdict": "priority_match",
        "complete": True,
        "mode": "thorough",
        "hits": hits,
        "errors": errors,
        "skipped": [],
        "counts": {"files_seen": 12_000, "bytes_seen": 31_000_000_000},
    }
    device = {
        "vendor": "Synthetic",
        "model": "Stick",
        "serial": f"S-{number:06d}",
        "bus": "usb",
        "size": 64_000_000_000,
    }
    scan_id = f"scan-{number}"
    return [
        scan_started_record(scan_id, device, ["0" * 32], "thorough"),
        {"type": "lights", "shown": "busy", "scan_id": scan_id},
        scan_finished_record(scan_id, report, ["busy", "red"]),
    ]


def journal_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for _, path in segment_files(folder))


def per_call_us(function: object, count: int = 2000) -> float:
    started = time.perf_counter()
    for _ in range(count):
        function()  # type: ignore[operator]
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(dir=args.folder))
    home = StationHome(base / "station")
    home.init()
    rows: list[tuple[str, str]] = []

    small = {"type": "lights", "shown": "busy", "scan_id": "scan-0"}
    journal = EncryptedJournal.open(base / "journal", base / "device.key", home.journal_public_path)
    started = time.perf_counter()
    for _ in range(args.records):
        journal.append(small)
    elapsed = time.perf_counter() - started
    journal.close()
    rows.append(("encrypted appends/s (small record, fdatasync each)", f"{args.records / elapsed:,.0f}"))
    rows.append(("  latency per append", f"{elapsed / args.records * 1e6:,.0f} µs"))

    plain = PlainJournal.open(base / "plain")
    started = time.perf_counter()
    for _ in range(args.records):
        plain.append(small)
    plain_elapsed = time.perf_counter() - started
    plain.close()
    rows.append(("plain (JSON lines) appends/s, fdatasync each", f"{args.records / plain_elapsed:,.0f}"))

    key, aead = Ed25519PrivateKey.generate(), ChaCha20Poly1305(os.urandom(32))
    plaintext = cbor2.dumps(small)
    rows.append(("  Ed25519 sign (one per record)", f"{per_call_us(lambda: key.sign(bytes(100))):.1f} µs"))
    rows.append(
        (
            "  ChaCha20-Poly1305 seal, small record",
            f"{per_call_us(lambda: aead.encrypt(bytes(12), plaintext, bytes(36))):.1f} µs",
        )
    )
    rows.append(
        (
            "  BLAKE3 chain step",
            f"{per_call_us(lambda: blake3.blake3(bytes(32) + plaintext).digest()):.1f} µs",
        )
    )

    scans = max(1, args.records // 20)
    scan_journal = EncryptedJournal.open(base / "scans", base / "device.key", home.journal_public_path)
    for number in range(scans):
        for record in typical_scan(number):
            scan_journal.append(record)
    scan_journal.close()
    per_scan = journal_bytes(base / "scans") / scans
    plaintext_per_scan = sum(len(cbor2.dumps(r)) for r in typical_scan(0))
    rows.append(("journal bytes per scan (3 records: 3 hits, 10 errors)", f"{per_scan:,.0f} B"))
    rows.append(("  of which record content (CBOR, before sealing)", f"{plaintext_per_scan:,} B"))

    enroll(home, base / "device.key")  # only an enrolled kiosk's journal imports
    started = time.perf_counter()
    summary = import_sources(home, [base / "journal", base / "scans"])
    import_elapsed = time.perf_counter() - started
    rows.append(
        ("station import, records/s (verify, decrypt, store)", f"{summary.records_new / import_elapsed:,.0f}")
    )

    print(f"machine: {machine(base)}\n")
    print("| measure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
