"""``fieldtriage scan --device DEV`` / ``--image FILE``: the daemon's path, for lab analysts.

Every partition is mounted read-only through its own read-only loop device, scanned, reported
(with what could not be mounted and why) and cleaned up, exactly as the kiosk does it. With
``--blocks`` the raw device is then sampled against the filters' block sets (the kiosk's
``[blocks]``; ``--target``, ``--confidence`` and ``--time-budget`` for the lab).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from agent.device_scan import scan_device
from agent.devices.mounter import Mounter
from agent.scan.blocks import BlockSettings, parse_size
from agent.scan.engine import Scanner
from agent.scan.progress import ProgressBar
from agent.scan.summary import print_device_summary
from filters.errors import UsageError


def register_block_options(parser: argparse.ArgumentParser) -> None:
    blocks = parser.add_argument_group("block sample (--device/--image; docs/block-sampling.md)")
    blocks.add_argument(
        "--blocks", action="store_true",
        help="after the files, sample 4 KiB blocks of the raw device against the filters' block sets",
    )  # fmt: skip
    blocks.add_argument(
        "--target", type=_size, default=None, metavar="SIZE",
        help="the item size the sample must find (default 20MiB)",
    )  # fmt: skip
    blocks.add_argument(
        "--confidence", type=_probability, default=None, metavar="P",
        help="with this probability (default 0.99)",
    )  # fmt: skip
    blocks.add_argument(
        "--time-budget", type=_seconds, default=None, metavar="SECONDS",
        help="stop sampling after this long (default 1800; the statement then says what was reached)",
    )  # fmt: skip
    blocks.add_argument("--block-seed", type=int, default=None, help=argparse.SUPPRESS)  # repeat a sample


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.5 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability from 0.5 to below 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 7 * 86400:
        raise argparse.ArgumentTypeError(f"must be 1 to 604800 seconds, not {text!r}")
    return value


def block_settings(args: argparse.Namespace) -> BlockSettings | None:
    """The block sample ``--blocks`` asks for (None without it)."""
    given = [args.target, args.confidence, args.time_budget, args.block_seed]
    if not args.blocks:
        if any(value is not None for value in given):
            raise UsageError("--target", "--target, --confidence and --time-budget need --blocks")
        return None
    defaults = BlockSettings()
    return BlockSettings(
        target=args.target if args.target is not None else defaults.target,
        confidence=args.confidence if args.confidence is not None else defaults.confidence,
        time_budget_s=args.time_budget if args.time_budget is not None else defaults.time_budget_s,
        seed=args.block_seed,
    )


def scan_device_or_image(args: argparse.Namespace, make_scanner: Callable[[], Scanner]) -> int:
    """Scan ``args.device`` or ``args.image`` with the scanner ``make_scanner`` builds (once the
    source is known to be usable); the exit status of its verdict."""
    source = args.device if args.device is not None else args.image
    if os.geteuid() != 0:
        raise UsageError(source, "scanning a device or image needs root (loop devices and mounts)")
    if not os.path.exists(source):
        raise UsageError(source, "no such device or image")
    if args.device is not None and not Path(source).is_block_device():
        raise UsageError(source, "not a block device (use --image for an image file)")
    if args.image is not None and not Path(source).is_file():
        raise UsageError(source, "not a regular file (use --device for a block device)")
    scanner = make_scanner()
    runtime = Path(tempfile.mkdtemp(prefix="fieldtriage-scan-"))
    # Ctrl-C and a SIGTERM (timeout, systemd, a lab script) stop the scan, which then unmounts and
    # detaches as usual: dying at once would leave mounts, loop devices and FUSE drivers behind
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, lambda *_: scanner.cancel.set()) for stop in stops}
    try:
        bar = ProgressBar(sys.stderr) if ProgressBar.wanted(sys.stderr) else None
        result = scan_device(source, Mounter(runtime), scanner, on_event=bar, blocks=block_settings(args))
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        for folder in (runtime / "mounts", runtime / "overlays", runtime):
            with contextlib.suppress(OSError):
                folder.rmdir()
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_device_summary(result, sys.stdout)
    return result.exit_status
