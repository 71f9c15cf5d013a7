"""The station's side of the kiosk demo: the analyst's steps, each a ``fieldtriage station ...`` command.

Enrolling the kiosk from its enrollment file; preparing the sync stick (a token bound to the stick's
filesystem UUID, written into a folder that becomes an ext4 disk image with that UUID); reading
back what the kiosk wrote onto it (the stick on a read-only loop device of its own, mounted on a
temporary folder, always unmounted and detached); importing, reporting, reviewing the two hits
(the known picture confirmed, the other one a false positive to exclude), sharing a filter of the
confirmed finds, and preparing the stick again, mounted read-write, so that it carries the shared
filter and the exclusion list to the kiosk.

The commands run in this process through the station's own parser (``station_command``), not
agent.cli, which imports this package: no import circle.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.demo.images import PartitionSpec, make_disk_image
from filters.errors import StationError

STICK_SIZE = 16 << 20
ANALYST = "demo analyst"
CONFIRMED_PATH = "DCIM/Camera/IMG_20269003.jpg"  # a known picture: confirmed, shared with other units
BENIGN_PATH = "WhatsApp/Media/WhatsApp Images/IMG-20261101-WA0007.jpg"  # reviewed as a false positive


def station_command(argv: list[str]) -> int:
    """``fieldtriage station ...`` run in this process, through the station's own parser."""
    from station import cli as station_cli

    parser = argparse.ArgumentParser(prog="fieldtriage")
    station_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status


def station(home: Path, *argv: str) -> int:
    """One station command with ``--home``; its output printed, indented."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = station_command(["station", *argv, "--home", str(home)])
    for line in buffer.getvalue().splitlines():
        print(f"  {line}" if line else "")
    return status


def station_json(home: Path, *argv: str) -> Any:
    """One station command's JSON output (not printed)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        station_command(["station", *argv, "--home", str(home)])
    return json.loads(buffer.getvalue())


def enroll(home: Path, enrollment: Path) -> None:
    print(f"\nstation: enrolling the kiosk from its enrollment file {enrollment}")
    print("station: (only enrolled kiosks are imported: a journal from any other key is kept aside)")
    name, location = "demo kiosk, bay 1", "this computer"
    station(home, "kiosks", "add", str(enrollment), "--name", name, "--location", location)


def make_sync_stick(home: Path, image: Path) -> str:
    """A sync stick as a disk image: the station prepares a folder for a filesystem UUID, and an ext4
    filesystem with that UUID is made from the folder's files. Returns the UUID."""
    fs_uuid = str(uuid.uuid4())
    staging = image.with_name(image.stem + "-files")
    staging.mkdir()
    print(f"\nstation: preparing a sync stick for filesystem {fs_uuid} (a token signed by the station)")
    station(home, "prepare-stick", str(staging), "--uuid", fs_uuid)
    files = {p.relative_to(staging).as_posix(): p.read_bytes() for p in staging.rglob("*") if p.is_file()}
    make_disk_image(image, "dos", [PartitionSpec("ext4", files, size=STICK_SIZE, uuid=fs_uuid)])
    print(f"station: sync stick {image.name} made (ext4, {len(files)} files)")
    return fs_uuid


@contextlib.contextmanager
def stick_mounted(image: Path, *, writable: bool) -> Iterator[Path]:
    """The stick's partition on a loop device of its own, mounted on a temporary folder; always
    unmounted and detached afterwards."""
    layout = json.loads(_run("sfdisk", "-J", str(image)))["partitiontable"]["partitions"][0]
    offset, size = layout["start"] * 512, layout["size"] * 512
    folder = Path(tempfile.mkdtemp(prefix="fieldtriage-demo-stick-"))
    loop, mounted = "", False
    try:
        loop = _run(
            "losetup", "-f", "--show", "--offset", str(offset), "--sizelimit", str(size),
            *([] if writable else ["--read-only"]), str(image),
        )  # fmt: skip
        if writable:  # a read-only mark on a loop device outlives its detach: this one may be reused
            _run("blockdev", "--setrw", loop)
        options = "nosuid,nodev,noexec" if writable else "ro,noload,nosuid,nodev,noexec"
        _run("mount", "-t", "ext4", "-o", options, loop, str(folder))
        mounted = True
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        with contextlib.suppress(OSError):  # still mounted if the unmount failed: left as it is
            folder.rmdir()


def import_stick(home: Path, image: Path) -> int:
    print("\nstation: reading the sync stick (mounted read-only) and importing its journal:")
    print("station: verifying signatures and chains, decrypting...")
    with stick_mounted(image, writable=False) as folder:
        segments = sorted(folder.glob("fieldtriage-journal/*/segment-*"))
        print(f"station: {len(segments)} encrypted segment file(s) on the stick")
        status = station(home, "import", str(folder))
    if status != 0:
        print("station: the import found alarms or warnings (above)")
    return status


def report(home: Path, folder: Path) -> None:
    print("\nstation: writing the report")
    station(home, "report", "--format", "html", "-o", str(folder))
    print(f"station: report for the analyst: {folder / 'index.html'}")
    print(f"station: kiosks page: {folder / 'kiosks.html'}")


def review(home: Path) -> None:
    """Confirm the known picture, mark the other hit a false positive to exclude at the kiosks."""
    hits = station_json(home, "review", "list", "--json")
    print(f"\nstation: {len(hits)} hit(s) need review")
    decisions = [
        (CONFIRMED_PATH, ["--state", "confirmed", "--note", "known picture, checked against the series"]),
        (BENIGN_PATH, [
            "--state", "false_positive", "--exclude",
            "--note", "a forwarded meme, benign: in the hash set by mistake",
        ]),
    ]  # fmt: skip
    for path, options in decisions:
        found = [h for h in hits if str(h["path"]).endswith(path)]
        if len(found) != 1:
            raise StationError(path, f"{len(found)} hits to review with this path, expected 1")
        hit = found[0]
        print(f"station: reviewing {hit['path']} ({hit['size']} bytes)")
        scan = f"{hit['kiosk']}:{hit['scan_id']}"
        station(home, "review", "set", scan, str(hit["hit"]), *options, "--analyst", ANALYST)


def share(home: Path) -> None:
    print("\nstation: sharing a filter of the confirmed finds (keyed hashes only: no path, case or name)")
    station(home, "share", "--provider", "demo unit")


def refresh_stick(home: Path, image: Path, fs_uuid: str) -> None:
    print("\nstation: preparing the sync stick again (mounted read-write): shared filter, exclusions")
    with stick_mounted(image, writable=True) as folder:
        station(home, "prepare-stick", str(folder), "--uuid", fs_uuid)


def _run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
