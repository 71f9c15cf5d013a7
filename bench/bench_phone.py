"""Phones over MTP: what reading a phone costs the kiosk, on QEMU's virtual MTP phone (usb-mtp).

The amd64 kiosk image boots under QEMU as in the system test (tests/system/guest.py); a synthetic
phone tree (random bytes, a few known pictures in DCIM/Camera and WhatsApp Images) is exported by
``usb-mtp`` on the emulated xhci bus, read-only. Each measurement plugs the phone anew (QEMU's
object cache and libgphoto2's start cold; the host's page cache is warm):

* raw sample reads: libgphoto2 in the guest lists the tree and asks 3 x 4 KiB per file
  (GetPartialObject; files up to 12 KiB whole): the floor of a sample-only scan;
* ``fieldtriage scan --phone``: the kiosk's own scan (auto mode: samples, hits confirmed whole),
  once to the end and once ``--stop-at-first-priority``; its report gives the time to the first
  priority hit;
* the agent in a bay: from ``device_add`` to a steady light (detection, session, scan, journal);
* a whole copy: every file read whole through libgphoto2 (``file_read`` in 1 MiB ranges), what a
  tool that copies the phone first would pay.

"on the wire" is every byte of the phone's USB transfers both ways, from the pcap usb-mtp writes
(``pcap=``): listing, object info and data. The phone is plugged into xhci port 3, which no bay
takes, except for the agent's run (port 1, the front bay). Under TCG the emulated USB stack and the
guest's CPU are the bottleneck, not the host's disk: compare rows with each other, not with a phone.

    sudo .venv/bin/python bench/bench_phone.py [--files 2000] [--mib 1024] [--known 4] [--large]
        [--image build/system-test-image]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.demo.pictures import generated_picture
from bench.machine_info import machine_line
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from station.home import StationHome
from tests.system.conftest import BUILD, REPO, Lab, accelerator, seed_data_partition
from tests.system.guest import Guest, GuestError, Plugged
from tests.system.phone_trees import PhoneTree, sized_tree
from tests.system.test_appliance import VERDICT_LIGHTS, uptime

FREE_PORT = 3  # USB 2 root port of the test machine's xhci that no bay of the test image takes
BAY_PORT = 1  # the front bay
GUEST_FOLDER = "/run/fieldtriage-bench"
PYTHON = "/opt/fieldtriage/.venv/bin/python"
FILTERS = "/var/lib/fieldtriage/filters"
TRUST = "/var/lib/fieldtriage/trust"
RUN_TIMEOUT = 3600.0
FINISHED = ("done", "removed early", "not journaled")  # bay phases with a verdict

# Runs inside the guest with the image's python-gphoto2: one JSON line out.
RAW_SCRIPT = r"""
import json, random, sys, time
import gphoto2 as gp
mode = sys.argv[1]
started = time.monotonic()
info_s = 0.0
found = gp.Camera.autodetect()
name, port = found.get_name(0), found.get_value(0)
ports = gp.PortInfoList(); ports.load()
drivers = gp.CameraAbilitiesList(); drivers.load()
camera = gp.Camera()
camera.set_port_info(ports[ports.lookup_path(port)])
camera.set_abilities(drivers[drivers.lookup_model(name)])
camera.init()
files = []
def walk(folder):
    listing = camera.folder_list_files(folder)
    for i in range(listing.count()):
        global info_s
        name = listing.get_name(i)
        asked = time.monotonic()
        files.append((folder, name, camera.file_get_info(folder, name).file.size))
        info_s += time.monotonic() - asked
    listing = camera.folder_list_folders(folder)
    for i in range(listing.count()):
        walk(folder.rstrip("/") + "/" + listing.get_name(i))
for storage in camera.get_storageinfo():
    walk(storage.basedir)
listed = time.monotonic()
payload, calls, per_read, cpu_s = 0, 0, [], 0.0
if mode == "probe":  # 300 files drawn at random, 3 x 4 KiB each, every read timed
    chunk = bytearray(4096)
    cpu = time.process_time()
    for folder, name, size in random.Random(1).sample([f for f in files if f[2] > 12288], 300):
        for offset in (0, size // 8192 * 4096, (size // 4096 - 1) * 4096):
            asked = time.monotonic()
            payload += camera.file_read(folder, name, gp.GP_FILE_TYPE_NORMAL, offset, memoryview(chunk))
            per_read.append(time.monotonic() - asked)
            calls += 1
    cpu_s = time.process_time() - cpu
elif mode == "sample":
    chunk = bytearray(4096); whole = bytearray(12288)
    for folder, name, size in files:
        if size <= 12288:
            offsets, buffer = ([0] if size else []), whole
        else:
            offsets, buffer = [0, size // 8192 * 4096, (size // 4096 - 1) * 4096], chunk
        for offset in offsets:
            payload += camera.file_read(folder, name, gp.GP_FILE_TYPE_NORMAL, offset, memoryview(buffer))
            calls += 1
else:
    chunk = bytearray(1 << 20)
    for folder, name, size in files:
        offset = 0
        while offset < size:
            got = camera.file_read(folder, name, gp.GP_FILE_TYPE_NORMAL, offset, memoryview(chunk))
            if got <= 0:
                break
            offset += got; calls += 1
        payload += offset
camera.exit()
done = time.monotonic()
print(json.dumps({"files": len(files), "bytes": sum(s for _, _, s in files), "list_s": listed - started,
                  "read_s": done - listed, "total_s": done - started, "payload": payload, "calls": calls,
                  "info_s": info_s, "per_read": per_read, "cpu_s": cpu_s}))
"""


@dataclass
class Row:
    what: str
    seconds: float  # to the verdict (or the end): inside the guest, without starting a process
    wall: float | None  # the whole command, seen from the host (a Python process under TCG starts slowly)
    payload: int  # file bytes read
    wire_in: int | None = None
    wire_out: int | None = None
    files: int | None = None
    first_priority_s: float | None = None
    verdict: str = ""
    note: str = ""


def make_lab(folder: Path, known: int) -> Lab:
    """A station, a provider key and a signed filter holding ``known`` generated pictures (as the
    system test's lab fixture makes them)."""
    folder.mkdir(parents=True)
    station = StationHome(folder / "station")
    station.init()
    key, public = generate_key_pair(folder / "provider")
    pictures = {f"known_{i}.jpg": generated_picture(random.Random(1000 + i), 320, 240) for i in range(known)}
    builder = FilterBuilder(name="bench phone")
    for name, data in pictures.items():
        (folder / name).write_bytes(data)
        for kind, digest in digest_path(folder / name, ["sample", "blake3"]).items():
            builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
    filter_path = folder / "bench-phone.ftf"
    write_filter(filter_path, builder.build_unsigned(), load_private_key(key))
    return Lab(folder, station, key, public, filter_path, pictures)


def build_image(lab: Lab, out: Path) -> Path:
    """The amd64 image, with the system test's command (the base stage is cached)."""
    subprocess.run(
        [sys.executable, REPO / "image-build" / "build.py", "--arch", "amd64", "--out", out,
         "--cache", BUILD / "cache", "--station", lab.station.folder],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return out


def phone(folder: Path, files: int, total: int, lab: Lab) -> PhoneTree:
    """Half the known pictures in DCIM/Camera, half in WhatsApp Images, among random files."""
    known = {}
    for number, data in enumerate(lab.known.values()):
        where = (
            "DCIM/Camera/IMG_2024{:04d}_known.jpg"
            if number % 2 == 0
            else "WhatsApp/Media/WhatsApp Images/IMG-2024{:04d}-WA9999.jpg"
        )
        known[where.format(number)] = data
    return sized_tree(folder, random.Random(2024), files - len(known), total, known)


def wire_bytes(pcap: Path) -> tuple[int, int]:
    """(bytes in, bytes out) that the phone's transfers moved, from the pcap usb-mtp wrote: Linux
    usbmon records (64-byte header: endpoint at offset 10, length at 32; the capture itself may be
    cut short). Data in is counted at completions ('C'), data out at submissions ('S')."""
    data = pcap.read_bytes()
    if len(data) < 24:
        return 0, 0
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    position, inbound, outbound = 24, 0, 0
    while position + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(f"{endian}IIII", data, position)
        position += 16
        if captured >= 64 and position + 64 <= len(data):
            kind, endpoint = data[position + 8], data[position + 10]
            (length,) = struct.unpack_from(f"{endian}I", data, position + 32)
            if endpoint & 0x80 and kind == ord("C"):
                inbound += length
            elif not endpoint & 0x80 and kind == ord("S"):
                outbound += length
        position += captured
    return inbound, outbound


class Bench:
    def __init__(self, guest: Guest, tree: PhoneTree, work: Path) -> None:
        self.guest = guest
        self.tree = tree
        self.work = work
        self.runs = 0

    def plug(self, port: int, pcap: bool) -> tuple[Plugged, Path | None]:
        """The phone on ``port``, once the guest's udev has it; optionally with a pcap."""
        self.runs += 1
        capture = self.work / f"run{self.runs}.pcap" if pcap else None
        guest = self.guest
        guest.plugs += 1
        device_id = f"benchphone{guest.plugs}"
        extra = {"pcap": str(capture)} if capture else {}
        guest._qmp("device_add", driver="usb-mtp", bus="xhci.0", port=str(port), rootdir=str(self.tree.root),
                   readonly=True, desc="Internal shared storage", serial=f"FTB{self.runs:05d}", id=device_id,
                   **extra)  # fmt: skip
        plugged = Plugged(device_id, "", self.tree.root, port)
        guest.plugged[device_id] = plugged
        guest.wait(
            lambda: guest.sh(f"udevadm settle; test -e /sys/bus/usb/devices/1-{port}:1.0").status == 0,
            60,
            "the phone in the guest",
        )
        return plugged, capture

    def gphoto_port(self, port: int) -> str:
        out = self.guest.sh(
            f"cat /sys/bus/usb/devices/1-{port}/busnum /sys/bus/usb/devices/1-{port}/devnum"
        ).out
        bus, number = out.split()
        return f"usb:{int(bus):03d},{int(number):03d}"

    def raw(self, mode: str, pcap: bool = False) -> Row:
        plugged, capture = self.plug(FREE_PORT, pcap=pcap)
        started = time.monotonic()
        done = self.guest.run([PYTHON, "-W", "ignore", f"{GUEST_FOLDER}/raw.py", mode], timeout=RUN_TIMEOUT)
        wall = time.monotonic() - started
        self.guest.unplug(plugged)
        if done.status != 0:
            raise GuestError(f"raw {mode}: {done.err.strip()[-800:]}")
        result = json.loads(done.out)
        inbound, outbound = wire_bytes(capture) if capture else (None, None)
        what = "libgphoto2: list + 3 x 4 KiB per file" if mode == "sample" else "libgphoto2: every file whole"
        what += ", USB captured" if pcap else ""
        note = f"open + list {result['list_s']:.1f} s, reads {result['read_s']:.1f} s"
        note += f" ({result['calls']:,} calls{', 1 MiB each' if mode != 'sample' else ''})"
        return Row(what, result["total_s"], wall, result["payload"], inbound, outbound, result["files"],
                   note=note)  # fmt: skip

    def kiosk_scan(self, stop_at_first: bool) -> Row:
        plugged, capture = self.plug(FREE_PORT, pcap=True)
        filters = self.guest.sh(f"ls {FILTERS}/*.ftf").out.split()
        argv = [f"{os.path.dirname(PYTHON)}/fieldtriage", "scan", "--phone", self.gphoto_port(FREE_PORT),
                "--json", "--trust", TRUST, *[a for f in filters for a in ("--filter", f)]]  # fmt: skip
        if stop_at_first:
            argv.append("--stop-at-first-priority")
        started = time.monotonic()
        done = self.guest.run(argv, timeout=RUN_TIMEOUT)
        wall = time.monotonic() - started
        self.guest.unplug(plugged)
        try:
            result: dict[str, Any] = json.loads(done.out)
        except ValueError:
            raise GuestError(f"scan --phone (exit {done.status}): {done.err.strip()[-800:]}") from None
        scan = result.get("scan") or {}
        counts, timings = scan.get("counts", {}), scan.get("timings", {})
        inbound, outbound = wire_bytes(capture) if capture else (None, None)
        what = "fieldtriage scan --phone" + (" --stop-at-first-priority" if stop_at_first else "")
        note = f"{len(scan.get('hits', []))} hits, {counts.get('files_confirmed', 0)} confirmed whole"
        errors = sum(counts.get("errors", {}).values())
        note += f", {errors} errors" if errors else ""
        elapsed = float(timings.get("elapsed_s", 0.0))
        verdict = str(result.get("verdict", ""))
        return Row(what, elapsed, wall, int(counts.get("bytes_read", 0)), inbound, outbound,
                   counts.get("files_read"), timings.get("first_priority_hit_s"), verdict, note)  # fmt: skip

    def agent_bay(self) -> Row:
        """The kiosk as an officer sees it: plugged into the front bay, timed on the guest's clock
        from just before ``device_add`` to the moment the verdict's light came on (its last change
        into that state). The verdict is taken from the status file: under TCG a busy guest can hold
        the scanning light for seconds, which a steady-light test would take for a verdict."""
        guest = self.guest
        since = uptime(guest)
        plugged, _ = self.plug(BAY_PORT, pcap=False)
        bay = guest.wait(
            lambda: (b := guest.bay("front"))["phase"] in FINISHED and b["verdict"] and b,
            RUN_TIMEOUT,
            "a verdict",
        )
        verdict = str(bay["verdict"])
        wanted = VERDICT_LIGHTS.get({"incomplete": "could_not_check"}.get(verdict, verdict))
        if wanted is not None:  # steady lights; a plain match blinks: its first change is taken
            guest.wait(lambda: guest.bay_lights("front")[-1][1] == wanted, 30, f"the {verdict} light")
        history = guest.bay_lights("front")
        lit = max(t for t, shown in history if t >= since and shown == (wanted or history[-1][1]))
        guest.unplug(plugged)
        note = f"{bay.get('hits')} hits"
        note += f", {bay['problem']}" if bay.get("problem") else ""
        logged = guest.sh("journalctl -b -u fieldtriage-agent -o short-monotonic --no-pager -n 40").out
        for what, marker in (("scan started", "phone ready: scanning"), ("verdict logged", "files read")):
            moments = [float(line[1 : line.index("]")]) for line in logged.splitlines()
                       if marker in line and line.startswith("[")]  # fmt: skip
            if moments and moments[-1] >= since:
                note += f"; {what} at {moments[-1] - since:.1f} s"
        what = "agent in the front bay: plug -> verdict light"
        return Row(what, lit - since, None, 0, None, None, None, None, verdict, note)


def megabytes(count: int | None) -> str:
    if count is None:
        return "-"
    return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count / 1e3:,.1f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=2000, help="files on the phone (default 2000)")
    parser.add_argument("--mib", type=int, default=1024, help="their total size in MiB (default 1024)")
    parser.add_argument("--large", action="store_true", help="20,000 files (same total size unless --mib)")
    parser.add_argument("--known", type=int, default=4, help="known pictures among them (default 4)")
    parser.add_argument("--image", type=Path, help="a built amd64 image folder (default: build it)")
    parser.add_argument("--skip-copy", action="store_true", help="leave out the whole copy")
    parser.add_argument(
        "--only-scan",
        action="store_true",
        help="only the kiosk's own scan: to the end, then to the first priority hit (the 20,000-file run)",
    )
    parser.add_argument(
        "--scaling",
        metavar="N,N,...",
        help="only this: the cost of one request at each number of objects (e.g. 2000,20000): list the "
        "phone, then 300 random files x 3 partial reads, each timed, with the guest's CPU time",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_phone: needs root (image build, loop device for the data partition, QEMU)")
    for tool in ("qemu-system-x86_64",) + (() if args.image else ("mmdebstrap",)):
        if shutil.which(tool) is None:
            sys.exit(f"bench_phone: needs {tool} (make image-deps)")
    files = 20_000 if args.large else args.files
    with tempfile.TemporaryDirectory(prefix="fieldtriage-bench-phone-") as scratch:
        work = Path(scratch)
        lab = make_lab(work / "lab", args.known)
        image = args.image or build_image(lab, BUILD / "bench-phone-image")
        disk = work / "kiosk.img"
        subprocess.run(["cp", "--sparse=always", image / "fieldtriage-amd64.img", disk], check=True)
        seed_data_partition(disk, lab)
        tree = phone(work / "phone", files, args.mib << 20, lab) if not args.scaling else PhoneTree(work)
        facts = f"{len(tree.files):,} files, {tree.total_bytes / 1e9:.2f} GB, {len(tree.known)} known"
        facts += f", host load average {os.getloadavg()[0]:.1f} at the start"  # other work slows the guest
        guest = Guest(image, work, disk, accelerator(image))
        print(f"Machine: {machine_line(f'QEMU {guest.accel} q35 2 vCPU, usb-mtp on qemu-xhci', facts)}")
        with guest:
            boot_s = guest.boot()
            print(f"Kiosk booted to READY in {boot_s:.0f} s; the host's page cache holds the phone's folder")
            guest.sh(f"mkdir -p {GUEST_FOLDER}")
            guest.write_file(f"{GUEST_FOLDER}/raw.py", RAW_SCRIPT.encode())
            if guest.run([PYTHON, "-c", "import gphoto2"]).status != 0:
                sys.exit("bench_phone: the image has no python-gphoto2 (pyproject's dependency): rebuild it")
            bench = Bench(guest, tree, work)
            if args.scaling:
                scaling(bench, work, lab, [int(n) for n in args.scaling.split(",")])
                guest.shutdown()
                return
            print()
            print("| measurement | to the end, s | command wall, s | files read | file bytes read "
                  "| USB in / out | file MB/s | first priority hit, s | verdict | notes |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
            runs = [lambda: bench.raw("sample"), lambda: bench.raw("sample", pcap=True),
                    lambda: bench.kiosk_scan(False), lambda: bench.kiosk_scan(True),
                    bench.agent_bay]  # fmt: skip
            if not args.skip_copy:
                runs.append(lambda: bench.raw("copy"))
            if args.only_scan:
                runs = [lambda: bench.kiosk_scan(False), lambda: bench.kiosk_scan(True)]
            for run in runs:
                print_row(run())
            guest.shutdown()
        print(f"\nhost load average {os.getloadavg()[0]:.1f} at the end")


def scaling(bench: Bench, work: Path, lab: Lab, sizes: list[int]) -> None:
    """Per-request cost against the number of objects on the phone, same layout and bytes per file.
    The guest's CPU time during the reads tells where it goes: near the wall time, libgphoto2 in the
    guest (under TCG); far below it, the wait for the phone (QEMU's usb-mtp, on the host)."""
    print("\n| objects | list s | file_get_info, ms each | partial read, ms: median | p90 | guest CPU / wall "
          "during reads |")  # fmt: skip
    print("|---|---|---|---|---|---|", flush=True)
    for count in sizes:
        bench.tree = phone(work / f"phone-{count}", count, count * (48 << 10), lab)  # 48 KiB a file
        plugged, _ = bench.plug(FREE_PORT, pcap=False)
        done = bench.guest.run(
            [PYTHON, "-W", "ignore", f"{GUEST_FOLDER}/raw.py", "probe"], timeout=RUN_TIMEOUT
        )
        bench.guest.unplug(plugged)
        if done.status != 0:
            raise GuestError(f"probe: {done.err.strip()[-800:]}")
        result = json.loads(done.out)
        reads = sorted(result["per_read"])
        median, p90 = reads[len(reads) // 2] * 1e3, reads[len(reads) * 9 // 10] * 1e3
        share = result["cpu_s"] / result["read_s"] if result["read_s"] else 0.0
        info_ms = result["info_s"] / result["files"] * 1e3
        print(f"| {result['files']:,} | {result['list_s']:.1f} | {info_ms:.2f} | {median:.2f} | {p90:.2f} "
              f"| {share:.2f} |", flush=True)  # fmt: skip
        shutil.rmtree(bench.tree.root, ignore_errors=True)


def print_row(row: Row) -> None:
    rate = f"{row.payload / row.seconds / 1e6:.1f}" if row.payload and row.seconds > 0 else "-"
    wire = "-" if row.wire_in is None else f"{megabytes(row.wire_in)} / {megabytes(row.wire_out)}"
    first = "-" if row.first_priority_s is None else f"{row.first_priority_s:.1f}"
    wall = "-" if row.wall is None else f"{row.wall:.1f}"
    files_read = "-" if row.files is None else f"{row.files:,}"
    print(f"| {row.what} | {row.seconds:.1f} | {wall} | {files_read} "
          f"| {megabytes(row.payload) if row.payload else '-'} | {wire} | {rate} | {first} "
          f"| {row.verdict or '-'} | {row.note} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
