"""``fieldtriage scan --device DEV`` / ``--image FILE``: the daemon's path, for lab analysts.

Every partition is mounted read-only through its own read-only loop device, scanned, reported
(with what could not be mounted and why) and cleaned up, exactly as the kiosk does it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.device_scan import DeviceScanResult, scan_device
from agent.devices.mounter import Mounter
from agent.scan.cli import VERDICT_LINES, build_scanner, print_summary
from agent.scan.progress import ProgressBar, human_bytes
from filters.errors import UsageError, printable


def scan_device_or_image(args: argparse.Namespace) -> int:
    source = args.device if args.device is not None else args.image
    if os.geteuid() != 0:
        raise UsageError(source, "scanning a device or image needs root (loop devices and mounts)")
    if not os.path.exists(source):
        raise UsageError(source, "no such device or image")
    if args.device is not None and not Path(source).is_block_device():
        raise UsageError(source, "not a block device (use --image for an image file)")
    if args.image is not None and not Path(source).is_file():
        raise UsageError(source, "not a regular file (use --device for a block device)")
    scanner = build_scanner(args)
    runtime = Path(tempfile.mkdtemp(prefix="fieldtriage-scan-"))
    previous = signal.signal(signal.SIGINT, lambda *_: scanner.cancel.set())
    try:
        bar = ProgressBar(sys.stderr) if ProgressBar.wanted(sys.stderr) else None
        result = scan_device(source, Mounter(runtime), scanner, on_event=bar)
    finally:
        signal.signal(signal.SIGINT, previous)
        try:
            runtime.joinpath("mounts").rmdir()
            runtime.rmdir()
        except OSError:
            pass
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_device_summary(result)
    return result.exit_status


def print_device_summary(result: DeviceScanResult) -> None:
    out = sys.stdout
    print(f"device: {printable(result.source)}, {human_bytes(result.size)}, table {result.scheme}", file=out)
    for part in result.partitions:
        print(_partition_line(part), file=out)
    for problem in result.device_problems:
        print(f"  not checked: {printable(problem)}", file=out)
    for problem in result.cleanup_problems:
        print(f"  cleanup: {printable(problem)}", file=out)
    if result.report is not None:
        print_summary(result.report, out)
    print(f"device verdict: {VERDICT_LINES[result.verdict]}", file=out)


def _partition_line(part: dict[str, Any]) -> str:
    fs = part["fs_type"] or "no filesystem"
    label = f" '{part['label']}'" if part["label"] else ""
    state = f"mounted read-only ({part['driver']}: {part['options']})" if part["mounted"] else part["problem"]
    line = f"  partition {part['number']}: {fs}{label}, {human_bytes(part['size'])}: {state}"
    if part.get("needs_recovery"):
        replayed = part.get("replayed")
        view = f"p{part['number']}-replayed"
        line += f"\n    {part['recovery']}: " + (
            f"also read replayed onto a copy-on-write layer ({replayed['layer']}), as {view}"
            if replayed
            else "the replayed state could not be read (see 'not checked')"
        )
    return "\n".join(printable(piece) for piece in line.split("\n"))
