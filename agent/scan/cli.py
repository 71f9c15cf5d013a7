"""``fieldtriage scan``: scan folders with signed filters; exit 0 no match, 1 match, 2 could not
scan, 3 no match but incomplete.

``register(subparsers)`` adds the subcommand to the ``fieldtriage`` parser (``agent/cli.py``).
Example::

    fieldtriage scan --filter kiosk.ftf --trust /var/lib/fieldtriage/trust /mnt/evidence
    fieldtriage scan --filter a.ftf --filter b.ftf --trust keys/ --mode full --json /mnt/evidence
    fieldtriage scan --filter k.ftf --trust keys/ --image stick.img --blocks --target 20MiB --confidence 0.99
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from agent.phones.cli import scan_phone_command
from agent.scan.device_cli import block_settings, register_block_options, scan_device_or_image
from agent.scan.engine import MAX_WORKERS, Scanner
from agent.scan.plan import MODES
from agent.scan.progress import ProgressBar
from agent.scan.summary import print_summary
from filters.container import load_filter
from filters.errors import UsageError
from filters.keys import TrustStore

SCAN_EXAMPLES = """modes:
  auto   (default) three 4 KiB samples per file; a sample hit is confirmed by reading the file whole;
         a filter with sets no sample set covers (an MD5 import) is read whole, as in full
  quick  samples only (at most 12 KiB per file); sets no sample set covers are not checked, so the
         result is never "no match" with such a filter
  full   every file read whole, every digest kind any set needs

examples:
  fieldtriage scan --filter unit.ftf --trust lab.pub /mnt/evidence
  fieldtriage scan --filter unit.ftf --trust lab.pub --device /dev/sdb --json > sdb.json   # root
  fieldtriage scan --filter unit.ftf --trust lab.pub --image stick.img --blocks              # root
  fieldtriage scan --filter unit.ftf --trust lab.pub --phone                  # the phone connected
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan folders with filters (exit 0 no match, 1 match, 2 could not scan, 3 incomplete)",
        description="Scan folders or files with signed contraband filters. Exit status: 0 no match and "
        "every file read, 1 something matched, 2 could not scan, 3 no match but incomplete.",
        epilog=SCAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="folder or file to scan")
    parser.add_argument(
        "--device", metavar="DEV",
        help="a block device: every partition mounted read-only through its own loop device (root)",
    )  # fmt: skip
    parser.add_argument(
        "--image", metavar="FILE", help="a raw disk or partition image, mounted the same way (root)"
    )
    parser.add_argument(
        "--phone", nargs="?", const="", metavar="PORT",
        help="a phone over MTP/PTP, read without writing to it (PORT like usb:001,005 when several)",
    )  # fmt: skip
    parser.add_argument(
        "--filter", dest="filters", action="append", required=True, type=Path, metavar="FILTER",
        help="filter file (.ftf); repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--trust", action="append", required=True, metavar="PUB_OR_DIR",
        help="trusted provider public key or folder of them; repeat for several",
    )  # fmt: skip
    parser.add_argument("--mode", choices=MODES, default="auto", help="default: auto")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (docs/report.md)")
    parser.add_argument("--workers", type=int, default=None, help="files read at once (default: by device)")
    parser.add_argument(
        "--stop-at-first-priority", action="store_true", help="stop at the first priority match"
    )
    register_block_options(parser)
    parser.set_defaults(handler=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError("--workers", f"must be between 1 and {MAX_WORKERS}, not {args.workers}")
    given = [bool(args.paths), args.device is not None, args.image is not None, args.phone is not None]
    if sum(given) != 1:
        raise UsageError("scan", "give folders to scan, or one --device, --image or --phone")
    if args.blocks and args.device is None and args.image is None:
        raise UsageError("--blocks", "samples the raw blocks of a --device or --image")
    block_settings(args)  # refuses --target without --blocks before anything is loaded
    if args.phone is not None:
        return scan_phone_command(args, lambda: build_scanner(args))
    if args.device is not None or args.image is not None:
        return scan_device_or_image(args, lambda: build_scanner(args))
    for path in args.paths:
        if not os.path.lexists(path):
            raise UsageError(path, "no such file or folder to scan")
    scanner = build_scanner(args)
    bar = ProgressBar(sys.stderr) if ProgressBar.wanted(sys.stderr) else None
    report = scanner.scan([os.fsencode(p) for p in args.paths], bar)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_summary(report, sys.stdout)
    return report.exit_status


def build_scanner(args: argparse.Namespace) -> Scanner:
    """The scanner the arguments ask for, with every filter loaded and verified (or UsageError)."""
    trust = TrustStore.from_paths(args.trust)
    if not trust.keys:
        raise UsageError("--trust", "no usable public key in " + ", ".join(args.trust))
    filters = [load_filter(path, trust) for path in args.filters]
    return Scanner(
        filters,
        mode=args.mode,
        workers=args.workers,
        stop_at_first_priority=args.stop_at_first_priority,
        cancel=threading.Event(),
    )
