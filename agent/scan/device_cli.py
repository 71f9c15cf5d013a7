"""``fieldtriage scan --device DEV`` / ``--image FILE``: the daemon's path, for lab analysts.

Every partition is mounted read-only through its own read-only loop device, scanned, reported
(with what could not be mounted and why) and cleaned up, exactly as the kiosk does it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from agent.device_scan import scan_device
from agent.devices.mounter import Mounter
from agent.scan.engine import Scanner
from agent.scan.progress import ProgressBar
from agent.scan.summary import print_device_summary
from filters.errors import UsageError


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
        result = scan_device(source, Mounter(runtime), scanner, on_event=bar)
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
