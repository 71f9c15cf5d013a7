"""The station's HTML pages (station/report.py, station/templates/), rendered from real journals.

The journals are written by the kiosk's own code: a disk scanned by ``BayWorker`` through the real
``Mounter`` (a fake mount backend that copies a tree into the mount folder: no root needed), a phone
scanned by ``PhoneWorker`` over the fake phone backend, and synthetic records where a state is hard
to reach (an interrupted scan, a kiosk clock that is wrong). They are exported as a sync stick
would and imported by the station, then reported with ``station report``. The pages are checked as
DOM trees (parsed here, and as Debian's chromium builds them), for escaping of hostile names, for
the words an analyst reads, and for rendering at 800 px (a screenshot, and print to PDF).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import html.parser
import json
import os
import re
import shutil
import struct
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import BayConfig, BlocksConfig, ScanConfig
from agent.daemon.bay import Bay, BayWorker
from agent.daemon.phone import PhoneWorker
from agent.daemon.provision import provision_kiosk
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.devices.probe import FilesystemProbe
from agent.journal import EncryptedJournal
from agent.journal.clock import ClockReader
from agent.journal.records import filters_record, scan_started_record
from agent.journal.sync import export_segments
from agent.lights.bay import BayLights, RecordingLights
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from filters.model import ContrabandFilter
from station import cli as station_cli
from station import kiosks as station_kiosks
from station.home import StationHome
from station.report import (
    StoredRecord,
    cell,
    csv_report,
    json_report,
    overview_html,
    page_name,
    report_context,
    scan_html,
)
from station.review import HitRef, record_review
from station.scans import Scan, load_scans
from station.store import Store
from tests.agent.journal.helpers import make_station, run_cli
from tests.agent.scan.conftest import FilterFactory, write_random

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium): pages not checked in a browser",
)
HOSTILE_NAME = b"<img src=x onerror=alert(1)>\n\xe2\x80\xaegpj.exe\xff.jpg"  # U+202E, a non-UTF-8 byte
PART = "p1" if shutil.which("sfdisk") else "p0"  # a GPT's partition 1, or the whole device
HOSTILE_SHOWN = f"{PART}/DCIM/<img src=x onerror=alert(1)>\\n\\u202egpj.exe\\xff.jpg"
KIOSK_NAME = "Phnom Penh CPU bay 2"
CLOCK_KIOSK_NAME = "Siem Reap <b>lab</b> \u202e kiosk"
ANDROID = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
           "ID_SERIAL_SHORT": "P7SERIAL", "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007",
           "DEVNAME": "/dev/bus/usb/001/007"}  # fmt: skip
SECOND = 1_000_000_000
NOTE = "known series <b>X</b> \u202e"
RAW_WORDS = re.compile(r"\b(True|False|None|priority_match|no_match|confirmed=|could_not_check)\b|\{'|\{\"")


# -- a DOM, as the page's parser builds it ---------------------------------------------------------


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        if self.tag in ("style", "script", "title"):
            return ""
        return "".join(c if isinstance(c, str) else f" {c.text()} " for c in self.children)

    def words(self) -> str:
        return " ".join(self.text().split())

    def find(self, tag: str | None = None, *, id: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (id is None or n.attrs.get("id") == id)
            and (cls is None or cls in n.attrs.get("class", "").split())
        ]

    def one(self, tag: str | None = None, **kw: str) -> Node:
        found = self.find(tag, **kw)
        assert len(found) == 1, (tag, kw, len(found))
        return found[0]

    def facts(self) -> dict[str, str]:
        """The ``<dt>``/``<dd>`` pairs of the definition lists below this node."""
        out: dict[str, str] = {}
        for dl in self.find("dl"):
            items = [n for n in dl.children if isinstance(n, Node)]
            for dt_node, dd_node in zip(items[::2], items[1::2], strict=True):
                out[dt_node.words()] = dd_node.words()
        return out


VOID = {"meta", "br", "img", "link", "hr", "input", "col", "wbr", "source"}


class DomBuilder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(page: str) -> Node:
    builder = DomBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def visible(document: Node) -> str:
    return document.one("body").words()


# -- real journals ---------------------------------------------------------------------------------


class CopyingMountBackend:
    """The MountBackend of tests/agent/devices: loop devices are names, a mount copies ``tree`` into
    the mount folder (``extra`` then adds what a copy cannot: a FIFO), read-only options reported."""

    def __init__(
        self, tree: Path, probe: FilesystemProbe, extra: Callable[[Path], None] | None = None
    ) -> None:
        self.tree, self.result, self.extra = tree, probe, extra
        self.mounted: set[Path] = set()
        self.count = 0

    def attach_loop(self, backing_fd: int, offset: int, size: int, *, read_only: bool = True) -> Any:
        assert read_only
        self.count += 1
        return FakeLoop(f"/dev/fakeloop{self.count}")

    def probe(self, device_path: str) -> FilesystemProbe:
        return self.result

    def mount_kernel(self, device_path: str, target: Path, fstype: str, options: str) -> None:
        shutil.copytree(self.tree, target, symlinks=True, dirs_exist_ok=True)
        if self.extra is not None:
            self.extra(target)
        self.mounted.add(target)

    def mount_fuse(self, program: str, device_path: str, target: Path, options: str) -> None:
        raise OSError(19, "no FUSE driver here")

    def unmount(self, target: Path) -> None:
        shutil.rmtree(target)
        target.mkdir()
        self.mounted.discard(target)

    def mount_options(self, target: Path) -> list[str] | None:
        return ["ro", "nosuid", "nodev", "noexec", "noatime"] if target in self.mounted else None


@dataclasses.dataclass
class FakeLoop:
    path: str
    closed: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def close(self) -> None:
        self.closed = True

    def wait_detached(self, timeout: float = 5.0) -> bool:
        return self.closed


def gpt_image(path: Path) -> Path:
    """An image with a GPT holding one partition (sfdisk), its bytes never read by the fake mount."""
    if shutil.which("sfdisk") is None:
        path.write_bytes(bytes(4 << 20))  # no table: one whole-device volume
        return path
    with path.open("wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["sfdisk", "-q", str(path)], input=b"label: gpt\n,,L\n", check=True, capture_output=True)
    return path


def scan_disk(
    root: Path,
    journal: EncryptedJournal,
    tree: Path,
    flt: ContrabandFilter,
    identity: DeviceIdentity,
    probe: FilesystemProbe,
    extra: Callable[[Path], None] | None = None,
    blocks: BlocksConfig | None = None,
) -> None:
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    backend = CopyingMountBackend(tree, probe, extra)
    mounter = Mounter(root / "run", backend, kernel_types={probe.fs_type}, fuse_programs=set(), overlay=None)
    worker = BayWorker(bay, identity, mounter, [flt], ScanConfig(), journal, blocks=blocks)
    worker.run()
    assert worker.journal_error is None and bay.phase == "done"


def scan_phone(journal: EncryptedJournal, phone: FakePhone, flt: ContrabandFilter) -> None:
    lights = BayLights("back", RecordingLights())
    bay = Bay(BayConfig("back", red=5, amber=6, green=13), lights)
    identity = phone_identity(ANDROID, "pci-0000:00:14.0-usb-0:1:1.0", "/devices/pci/usb1/1-1")
    worker = PhoneWorker(
        bay,
        identity,
        FakePhoneBackend({"usb:001,007": phone}),
        [flt],
        ScanConfig(),
        journal,
        poll_seconds=0.05,
    )
    bay.worker = worker
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and bay.phase == "done"


def enroll(home: StationHome, device_key: Path, name: str) -> None:
    """Enroll the kiosk whose key is ``device_key`` (``station kiosks add``), where the station has
    enrollment; before it, a kiosk is registered at its first import and has no name."""
    enrollment = provision_kiosk(device_key)
    if not hasattr(station_kiosks, "enroll_kiosk"):
        return
    status, out, err = run_cli(
        station_cli.register,
        ["station", "kiosks", "add", str(device_key.with_name("enrollment.json")), "--name", name,
         "--location", "Unit 3", "--home", str(home.folder)],
    )  # fmt: skip
    assert status == 0, (out, err, enrollment)


def station(*argv: str) -> tuple[int, str, str]:
    return run_cli(station_cli.register, ["station", *argv])


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * SECOND


def synthetic_scan(started: dt.datetime, seconds: int, **fields: Any) -> dict[str, Any]:
    """A daemon-shaped ``scan`` record of a clean stick (docs/journal-format.md, section 6)."""
    return {
        "type": "scan",
        "bay": "left",
        "device": {"kind": "disk", "vendor": "Kingston", "model": "DataTraveler", "serial": "KT-77",
                   "size": 16 << 30, "port_path": "pci-0000:00:14.0-usb-0:3:1.0"},
        "filters": [{"id": "f" * 32, "name": "unit filter", "signer": "5" * 32}],
        "mode": "auto",
        "started": iso(started),
        "finished": iso(started + dt.timedelta(seconds=seconds)),
        "seconds": float(seconds),
        "verdict": "no_match",
        "removed_early": False,
        "lights_shown": ["scanning", "no_match"],
        "notes": [],
        "partitions": [],
        "partition_table": "none",
        "device_problems": [],
        "cleanup_problems": [],
        "scan": {"verdict": "no_match", "complete": True, "cancelled": False,
                 "stopped_at_first_priority": False, "mode": "auto", "first_pass_kinds": ["sample"],
                 "filters": [], "hits": [], "errors": [], "skipped": [],
                 "counts": {"directories": 4, "files_seen": 12, "files_read": 12, "bytes_seen": 9_000_000,
                            "bytes_read": 147_456}},
        **fields,
    }  # fmt: skip


class SteppedClock(ClockReader):
    """The time fields of a kiosk's journal, set by the test: boot, monotonic, wall, synchronised."""

    def __init__(self) -> None:
        super().__init__(boot_id="boot-1", synchronised=lambda: None)
        self.stamp: dict[str, Any] = {}

    def now(self) -> dict[str, Any]:
        return dict(self.stamp)

    def at(self, boot: str, mono_s: int, wall: dt.datetime, synchronised: bool | None) -> None:
        self.stamp = {"wall_ns": ns(wall), "monotonic_ns": mono_s * SECOND, "boot_id": boot,
                      "clock_synchronised": synchronised}  # fmt: skip


WRONG_2021 = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
TRUE_SYNC = dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC)
STICK_PREPARED = dt.datetime(2026, 4, 1, 8, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class Lab:
    home: StationHome
    html: Path
    pages: dict[str, str]  # file name -> page
    scans: list[Scan]
    known: bytes
    kiosk_a: str
    kiosk_b: str

    def page_scan(self, predicate: Callable[[Scan], bool]) -> Scan:
        [scan] = [s for s in self.scans if predicate(s)]
        return scan

    def page_of(self, predicate: Callable[[Scan], bool]) -> Node:
        return dom(self.pages[page_name(self.page_scan(predicate))])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("report-pages")
    home = make_station(root / "station")
    known = write_random(root / "known.jpg", 150_000, 7)
    flt = FilterFactory(root / "filters").make([known], name="unit <filter>")

    # kiosk A: a hostile-named known picture on a GPT stick, a clean stick, a phone; its own clock
    kiosk_a = root / "kiosk-a"
    kiosk_a.mkdir()
    enroll(home, kiosk_a / "device.key", KIOSK_NAME)
    journal = EncryptedJournal.open(kiosk_a / "journal", kiosk_a / "device.key", home.journal_public_path)
    carried = {
        "id": flt.metadata.filter_id,
        "name": flt.metadata.name,
        "entries": 2,
        "signer": flt.signer_key_id,
    }
    journal.append(filters_record([carried | {"filter_id": flt.metadata.filter_id}]))
    tree = root / "evidence"
    (tree / "DCIM").mkdir(parents=True)
    (tree / "DCIM" / os.fsdecode(HOSTILE_NAME)).write_bytes(known.read_bytes())
    for i in range(4):
        write_random(tree / "DCIM" / f"DSC_{i:04}.JPG", 20_000 + i, i)
    os.symlink("../elsewhere", tree / "DCIM" / "link.jpg")
    image = gpt_image(root / "stick.img")
    identity = DeviceIdentity(
        str(image), "/devices/pci0000:00/usb1/1-2/1-2:1.0/host3/block/sdb", "sdb", 31_914_983_424,
        vendor="SanDisk", model="Cruzer Blade", serial="4C530001230508",
        port_path="pci-0000:00:14.0-usb-0:2:1.0",
    )  # fmt: skip
    probe = FilesystemProbe(fs_type="vfat", uuid="1A2B-3C4D", label="NIKON D3500")
    scan_disk(root, journal, tree, flt, identity, probe, extra=lambda t: os.mkfifo(t / "DCIM" / "pipe"))
    clean = root / "clean"
    write_random(clean / "Documents" / "notes.txt", 5_000, 99)
    clean_identity = dataclasses.replace(identity, vendor="Verbatim", model="Store n Go", serial="VB-1")
    scan_disk(
        root,
        journal,
        clean,
        flt,
        clean_identity,
        FilesystemProbe(fs_type="exfat", uuid="64A1-0B2C", label=""),
    )
    files = {f"DCIM/Camera/IMG_{i}.jpg": os.urandom(30_000) for i in range(3)}
    files["WhatsApp/Media/WhatsApp Images/IMG-1.jpg"] = known.read_bytes()
    phone = FakePhone({"Internal shared storage": files}, vanish={"/store_00010001/DCIM/Camera/IMG_1.jpg"})
    journal.append(
        scan_started_record("never-finished", {"vendor": "Lexar", "model": "JumpDrive"}, [], "auto")
    )
    scan_phone(journal, phone, flt)  # the newest record names the filters the kiosk carries
    journal.close()

    # kiosk B: a clock that is wrong, then synchronised in the same boot; a sync stick in another boot
    kiosk_b = root / "kiosk-b"
    kiosk_b.mkdir()
    enroll(home, kiosk_b / "device.key", CLOCK_KIOSK_NAME)
    clock = SteppedClock()
    clock.at("boot-1", 1, WRONG_2021, False)
    journal = EncryptedJournal.open(
        kiosk_b / "journal", kiosk_b / "device.key", home.journal_public_path, clock=clock
    )
    clock.at("boot-1", 60, WRONG_2021 + dt.timedelta(seconds=60), False)
    journal.append(synthetic_scan(WRONG_2021, 60, exhibit="EXH-2026-0042 <b>", officer="PC 1234 Sok"))
    clock.at("boot-1", 360, TRUE_SYNC, True)  # NTP set the clock 300 s later: 2026-03-01 12:05:00
    journal.append(filters_record([]))
    clock.at("boot-2", 100, WRONG_2021 + dt.timedelta(days=3), False)
    journal.append({"type": "sync", "token_id": "ab" * 16, "fs_uuid": "aaaa-0001", "partition": 1,
                    "segments_copied": [], "filters_taken": [], "trust_keys_taken": [], "refused": [],
                    "token_created": int(STICK_PREPARED.timestamp()),
                    "lights_shown": ["sync_done"]})  # fmt: skip
    clock.at("boot-2", 400, WRONG_2021 + dt.timedelta(days=3, seconds=300), False)
    journal.append(synthetic_scan(WRONG_2021 + dt.timedelta(days=3, seconds=240), 60, bay="right"))
    clock.at("boot-3", 50, WRONG_2021 + dt.timedelta(days=9), None)
    journal.append(synthetic_scan(WRONG_2021 + dt.timedelta(days=9), 10, bay="top"))
    clock.at("boot-4", 50, TRUE_SYNC + dt.timedelta(days=60), True)
    journal.append(synthetic_scan(TRUE_SYNC + dt.timedelta(days=60), 10, bay="bottom"))
    journal.close()

    stick = root / "stick"
    for kiosk in (kiosk_a, kiosk_b):
        export_segments(kiosk / "journal", stick)
    status, out, err = station("import", "--home", str(home.folder), str(stick))
    assert status == 0, (out, err)
    store = Store.open(home.database_path)
    id_a = next(s.kiosk for s in load_scans(store) if is_disk(s))
    [id_b] = [p.name for p in (stick / "fieldtriage-journal").iterdir() if p.name != id_a]
    # an altered copy of kiosk B's first segment: an alarm for that kiosk
    altered = root / "altered" / id_b / "segment-00000000.ftj"
    altered.parent.mkdir(parents=True)
    data = bytearray((stick / "fieldtriage-journal" / id_b / "segment-00000000.ftj").read_bytes())
    data[-10] ^= 0xFF
    altered.write_bytes(bytes(data))
    status, out, _ = station("import", "--home", str(home.folder), str(altered))
    assert status == 1 and "alarm" in out, out
    disk = next(s for s in load_scans(store) if is_disk(s))
    for state, analyst, note, day in (
        ("needs_review", "alice", "second opinion", 2),
        ("confirmed", "bob", NOTE, 3),
    ):
        moment = dt.datetime(2026, 5, day, 9, 30, tzinfo=dt.UTC)
        record_review(store, HitRef(disk, 0), state, note=note, analyst=analyst, now_ns=ns(moment))
    output = root / "html"
    status, out, err = station("report", "--home", str(home.folder), "--output", str(output))
    assert status == 0, err
    pages = {p.name: p.read_text(encoding="utf-8") for p in output.iterdir()}
    return Lab(home, output, pages, load_scans(store), known.read_bytes(), id_a, id_b)


def is_disk(s: Scan) -> bool:
    return s.device.get("vendor") == "SanDisk"


def section_ids(document: Node) -> list[str]:
    return [n.attrs["id"] for n in document.find("section")]


# -- the scan page -----------------------------------------------------------------------------------


def test_a_disk_scan_page_reads_summary_checked_filters_hits_in_words(lab: Lab) -> None:
    page = lab.page_of(is_disk)
    assert section_ids(page) == ["summary", "checked", "filters", "hits"]
    summary = page.one("section", id="summary")
    assert page.one(id="verdict").words().startswith("priority match")
    facts = summary.facts()
    assert facts["Device"] == "SanDisk Cruzer Blade" and facts["Serial"] == "4C530001230508"
    assert facts["USB port"] == "pci-0000:00:14.0-usb-0:2:1.0"
    assert facts["Size"] == "31.9 GB (31,914,983,424 bytes)"
    assert facts["Bay"] == "front" and facts["Lights shown"].endswith("→ priority match")
    if hasattr(station_kiosks, "kiosk_label"):
        assert KIOSK_NAME in facts["Kiosk"]
    else:
        assert facts["Kiosk"] == lab.kiosk_a
    assert "Exhibit" not in facts and "Officer" not in facts  # this kiosk journals neither
    assert facts["Kiosk clock"]  # the state in words, whatever this machine's clock says
    checked = page.one("section", id="checked")
    partitions = checked.one("table", cls="partitions").words()
    assert "vfat" in partitions and "label NIKON D3500" in partitions and "UUID 1A2B-3C4D" in partitions
    assert "read-only: ro,nosuid,nodev,noexec,noatime (kernel driver)" in partitions
    files = checked.facts()
    assert files["Files seen"] == "5" and files["Files read whole to confirm a hit"] == "1"
    assert files["Mode"].startswith("auto: sample digests of every file")
    assert "looked up for every file: sets" in files["Sets consulted"]
    skipped = checked.one("table", cls="skipped").words()
    assert "symbolic link" in skipped and "named pipe" in skipped and "link.jpg" in skipped
    filters = page.one("section", id="filters")
    ffacts = filters.facts()
    assert ffacts["Name"] == "unit <filter>" and ffacts["Provider"] == "not journaled by the kiosk"
    assert "sample digest" in filters.one("table", cls="sets").words()
    [hit] = page.find(cls="hit")
    assert hit.one("code", cls="path").words() == HOSTILE_SHOWN
    hfacts = hit.facts()
    assert hfacts["Confirmation"] == "confirmed: a whole-file digest matched"
    assert hfacts["Class"] == "priority" and hfacts["Size"] == "150.0 kB (150,000 bytes)"
    assert hfacts["MD5"] == hashlib.md5(lab.known).hexdigest()
    assert hfacts["SHA-1"] == hashlib.sha1(lab.known).hexdigest()
    assert hfacts["SHA-256"] == hashlib.sha256(lab.known).hexdigest()
    assert "BLAKE3" in hfacts and "sample digest" in hfacts
    assert (
        hfacts["Review"] == "confirmed"
        and hfacts["Reviewed by"] == "bob, 2026-05-03 09:30:00 UTC (station clock)"
    )
    assert hfacts["Review note"] == "known series <b>X</b> \\u202e" and hit.find("b") == []
    assert hfacts["Earlier reviews"] == "needs review: alice, 2026-05-02 09:30:00 UTC: second opinion"
    assert (
        hfacts["To review"]
        == f"fieldtriage station review set {lab.kiosk_a}:{lab.page_scan(is_disk).scan_id} 0 --state …"
    )
    assert facts["Review"] == "1 of 1 hits reviewed: 1 confirmed"
    assert "no picture, thumbnail or content" in page.one(id="policy").words()
    assert page.find("img") == [] and page.find("script") == []
    assert not RAW_WORDS.search(visible(page)), RAW_WORDS.search(visible(page))


def test_a_phone_page_names_maker_model_serial_and_storages(lab: Lab) -> None:
    page = lab.page_of(lambda s: s.device.get("kind") == "phone")
    facts = page.one("section", id="summary").facts()
    assert facts["Kind"] == "phone (MTP)" and facts["Maker"] == "Google" and facts["Model"] == "Pixel 7"
    assert facts["Serial"] == "P7SERIAL" and facts["Bay"] == "back"
    assert facts["Storages"] == "Internal shared storage (68.7 GB, 17.2 GB free)"
    checked = page.one("section", id="checked")
    assert checked.find("table", cls="partitions") == []
    assert "Internal shared storage" in checked.one("table", cls="storages").words()
    assert "vanished" in checked.one("table", cls="errors").words()
    assert "could not be read" in checked.one("ul", cls="reasons").words()
    [hit] = page.find(cls="hit")
    assert (
        hit.one("code", cls="path").words()
        == "Internal shared storage/WhatsApp/Media/WhatsApp Images/IMG-1.jpg"
    )
    assert not RAW_WORDS.search(visible(page))


def test_no_section_is_printed_empty(lab: Lab) -> None:
    page = lab.page_of(lambda s: s.device.get("vendor") == "Verbatim")
    assert page.one(id="verdict").words().startswith("no match")
    assert section_ids(page) == ["summary", "checked", "filters"]
    assert page.find(id="policy") == [] and page.find(cls="hit") == []
    assert page.find("table", cls="errors") == [] and page.find("table", cls="skipped") == []
    assert page.find(id="unchecked") == []
    for heading in page.find("h3"):
        assert heading.words() not in ("Notes from the kiosk", "After the scan")
    for table in page.find("table"):
        assert table.find("td"), f"an empty table: {table.words()}"


def test_an_interrupted_scan_says_so(lab: Lab) -> None:
    page = lab.page_of(lambda s: s.scan_id == "never-finished")
    assert page.one(id="verdict").words().startswith("interrupted")
    assert "journaled no verdict" in page.one(id="unchecked").words() or "journaled no verdict" in visible(
        page
    )
    assert page.find(id="hits") == []


# -- the clock -------------------------------------------------------------------------------------


def scan_of_bay(lab: Lab, bay: str) -> Node:
    for s in lab.scans:
        if s.kiosk != lab.kiosk_b:
            continue
        page = dom(lab.pages[page_name(s)])
        if page.one("section", id="summary").facts().get("Bay") == bay:
            return page
    raise AssertionError(bay)


def test_clock_estimate_from_a_synchronised_record_of_the_same_boot(lab: Lab) -> None:
    page = scan_of_bay(lab, "left")
    facts = page.one("section", id="summary").facts()
    assert facts["Started"] == "2021-01-01 00:00:00 UTC (kiosk clock)"
    assert facts["Exhibit"] == "EXH-2026-0042 <b>" and facts["Officer"] == "PC 1234 Sok"
    warning = page.one(id="clock-warning")
    assert "not synchronised" in warning.words()
    # the record was written at monotonic 60 s; the clock was right at 360 s: 2026-03-01 12:05:00
    assert warning.one("strong", cls="estimate").words() == "about 2026-03-01 11:59:00 UTC"
    assert "behind by 5 years" in warning.words()


def test_clock_lower_bound_from_a_sync_stick_used_in_the_same_boot(lab: Lab) -> None:
    """``token_created`` in the sync record: the station's time when it prepared the stick."""
    warning = scan_of_bay(lab, "right").one(id="clock-warning")
    # the stick was used at monotonic 100 s, the record written at 400 s, the scan took 60 s
    assert warning.one("strong", cls="estimate").words() == "no earlier than 2026-04-01 08:04:00 UTC"
    assert "prepared at 2026-04-01 08:00:00 UTC" in warning.words()
    assert "no later than" in warning.words()


def test_no_estimate_is_said_plainly(lab: Lab) -> None:
    page = scan_of_bay(lab, "top")
    assert "could not tell" in page.one("section", id="summary").facts()["Kiosk clock"]
    warning = page.one(id="clock-warning")
    assert warning.find(cls="estimate") == []
    assert "cannot estimate the true time" in warning.words()
    assert scan_of_bay(lab, "bottom").find(id="clock-warning") == []  # synchronised: no warning


# -- the overview pages ----------------------------------------------------------------------------


def test_index_links_every_scan_and_the_kiosk_page(lab: Lab) -> None:
    index = dom(lab.pages["index.html"])
    links = {a.attrs["href"] for a in index.find("a")}
    assert {page_name(s) for s in lab.scans} | {"index.html", "kiosks.html"} == links
    assert set(lab.pages) == links
    rows = index.one("table", cls="scans").find("tr")[1:]
    assert len(rows) == len(lab.scans) == 8
    assert "EXH-2026-0042 <b>" in index.words()
    assert "alarm" in index.one("section", id="findings").words()
    assert not RAW_WORDS.search(visible(index))


def test_kiosk_overview_counts_filters_alarms_per_kiosk(lab: Lab) -> None:
    page = dom(lab.pages["kiosks.html"])
    sections = page.find("section", cls="kiosk")
    assert len(sections) == 2
    by_id = {s.words(): s for s in sections}
    [a] = [s for text, s in by_id.items() if lab.kiosk_a in text or KIOSK_NAME in text]
    [b] = [s for s in sections if s is not a]
    facts = a.facts()
    assert facts["Scans in this report"] == "4" and facts["Alarms"] == "0"
    assert "station clock" in facts["Last import at the station"]
    verdicts = a.one("table", cls="verdicts").words()
    assert "priority match" in verdicts and "no match" in verdicts and "interrupted" in verdicts
    assert "unit <filter>" in a.one("table", cls="filters").words()
    assert b.facts()["Alarms"] != "0" and b.find("table", cls="findings")
    assert "2021-01-04" in b.facts()["Last sync stick used"]
    if hasattr(station_kiosks, "kiosk_label"):
        assert "Siem Reap <b>lab</b> \\u202e kiosk" in b.words()
    assert not RAW_WORDS.search(visible(page))


# -- odd values ------------------------------------------------------------------------------------


def odd_record() -> dict[str, Any]:
    """Every field of a scan record of the wrong type or out of any range (what a record validator
    refuses at import; the report must not depend on it)."""
    return {
        "type": "scan",
        "bay": ["x"],
        "device": {"vendor": "<b>Evil</b>", "model": "\u202eXSS", "serial": 12345, "kind": "disk",
                   "size": 10**40, "port_path": {"a": 1}},
        "filters": "not a list",
        "mode": 7,
        "started": "0000-01-01T00:00:00Z",
        "seconds": float("nan"),
        "verdict": {"priority_match": True},
        "exhibit": "<script>alert('exhibit')</script>",
        "officer": ["PC 1", None, True],
        "removed_early": "yes",
        "lights_shown": [None, 5, "<i>"],
        "device_problems": "partition 1: <b>",
        "partitions": [5, {"number": "1", "options": {"ro": True}, "mounted": True, "size": -1,
                           "uuid": ["x"]}],
        "storages": [None],
        "notes": ["x" * 100_000],
        "scan": {
            "hits": [5, {"path": "A" * 70_000 + "<script>", "size": "big", "matches": 5, "digests": "abc",
                         "categories": {"a": 1}, "confirmed": 1, "priority": "yes"},
                     {"path_b64": "!!!", "path": "<svg onload=alert(1)>", "digests": {"md5": 5, "sha1": None},
                      "matches": [{"confirmed": "x", "set": [1]}]}],
            "errors": [{"path": "e\u202e", "code": 5, "reason": None}, "e"],
            "counts": "x",
            "filters": [{"filter_id": None, "sets": [None, {"set": "<", "kind": 3, "checked": False}]}],
            "errors_not_listed": 2**70,
            "first_pass_kinds": "sample",
        },
        "blocks": {"statement": {"a": None}, "probability": float("nan"), "confidence_target": "high",
                   "seed": 2**200, "sampled": "x", "counted": [1], "hits": "many", "hits_not_listed": 2**70,
                   "seconds": float("inf"), "subsample": None, "stopped": b"\x00",
                   "regions": [5, {"unit": "x", "size": -1, "files": ["not checked"],
                                   "windows_per_unit": 2**90, "label": "<b>region</b>"}]},
        "block_hits": [5, {"offset": "far", "partition": [1], "priority": True, "digest": b"\x01",
                           "region": {"r": 1}, "filter_name": "<svg onload=alert(1)>"}, {"offset": -(2**63)}],
        "statement": ["<script>", None],
    }  # fmt: skip


def test_odd_values_are_words_never_a_crash(tmp_path: Path) -> None:
    body = odd_record()
    scan = Scan(
        "k" * 32, "0.1", device=body["device"], started_ns=10**30, finished_ns=-(2**62), verdict="weird"
    )
    scan.hits = [h for h in body["scan"]["hits"] if isinstance(h, dict)]
    scan.lights = ["<i>", "5"]
    record = StoredRecord(0, 1, 2**62, 5, "b", False, "scan", body)
    page_text = scan_html(scan, [record], report_context(None, [scan]))
    page = dom(page_text)
    assert (
        page.find("script") == [] and page.find("svg") == [] and page.find("b") == [] and page.find("i") == []
    )
    words = visible(page)
    assert "<script>alert('exhibit')</script>" in words and "\\u202eXSS" in words
    assert "more characters not shown" in words and "not shown)" in words
    assert "out of range" in words and "unknown" in page.one(id="verdict").words()
    assert "a number of 133 bits (not shown)" in words
    assert not RAW_WORDS.search(words.replace("<script>", "")), RAW_WORDS.search(words)
    overview = dom(
        overview_html([scan], [("alarm", "k" * 32, "0", "1", "<b>x</b>")], report_context(None, [scan]))
    )
    assert overview.find("b") == [] and "<b>x</b>" in visible(overview)
    document = json.loads(json_report([scan], []))
    assert document["scans"][0]["started"] is None and document["scans"][0]["time_problems"]
    assert csv_report([scan]).count("\n") == 2


def test_csv_cells_behind_spaces_are_guarded() -> None:
    assert cell(" =1+1") == "' =1+1" and cell("\u00a0@SUM(A1)") == "'\u00a0@SUM(A1)"
    assert cell(" -2") == "' -2" and cell("\t=2") == "\\t=2"  # a tab is escaped: no formula
    assert cell("plain") == "plain" and cell(None) == ""


def test_csv_and_json_keep_working(lab: Lab) -> None:
    status, out, _ = station("report", "--home", str(lab.home.folder), "--format", "csv")
    assert status == 0 and out.count("\n") == 9 and "priority_match" in out
    status, out, _ = station("report", "--home", str(lab.home.folder), "--format", "json")
    scans = json.loads(out)["scans"]
    assert status == 0 and len(scans) == 8
    [disk] = [s for s in scans if s["device"].get("vendor") == "SanDisk"]
    assert base64.b64decode(disk["hits"][0]["path_b64"]) == f"{PART}/DCIM/".encode() + HOSTILE_NAME
    [review] = disk["reviews"]
    assert review["state"] == "confirmed" and review["analyst"] == "bob" and review["earlier"] == 1
    status, out, _ = station(
        "report", "--home", str(lab.home.folder), "--format", "csv", "--device", "sandisk"
    )
    assert out.splitlines()[1].endswith(",1 of 1 hits reviewed: 1 confirmed")


# -- in a real browser -----------------------------------------------------------------------------


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
               *arguments]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@needs_chromium
def test_the_browser_builds_the_page_with_every_hostile_name_as_text(lab: Lab, tmp_path: Path) -> None:
    [scan] = [s for s in lab.scans if is_disk(s)]
    page = dom(chromium(tmp_path, "--dump-dom", (lab.html / page_name(scan)).as_uri()).stdout)
    [hit] = page.find(cls="hit")
    assert hit.one("code", cls="path").words() == HOSTILE_SHOWN
    assert page.find("img") == [] and page.find("script") == []
    assert hit.facts()["SHA-256"] == hashlib.sha256(lab.known).hexdigest()
    assert page.one(id="verdict").words().startswith("priority match")
    assert section_ids(page) == ["summary", "checked", "filters", "hits"]
    kiosks = dom(chromium(tmp_path, "--dump-dom", (lab.html / "kiosks.html").as_uri()).stdout)
    assert len(kiosks.find("section", cls="kiosk")) == 2 and kiosks.find("b") == []


@needs_chromium
def test_pages_fit_800_pixels(lab: Lab, tmp_path: Path) -> None:
    """No page is wider than 800 px: a copy of each with a script that writes its width into the
    DOM (the pages themselves forbid scripts)."""
    odd = Scan("k" * 32, "0.1", device=odd_record()["device"], verdict="weird")
    odd.hits = [h for h in odd_record()["scan"]["hits"] if isinstance(h, dict)]
    odd_page = scan_html(odd, [StoredRecord(0, 1, 5, 5, "b", False, "scan", odd_record())])
    pages = {**lab.pages, "odd.html": odd_page}
    for name, page in pages.items():
        measured = page.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"').replace(
            "</body>",
            "<script>document.body.setAttribute('data-width', document.documentElement.scrollWidth)"
            "</script></body>",
        )
        path = tmp_path / name
        path.write_text(measured, encoding="utf-8")
        out = chromium(tmp_path, "--window-size=800,1000", "--dump-dom", path.as_uri()).stdout
        width = int(dom(out).one("body").attrs["data-width"])
        assert width <= 800, f"{name} is {width} px wide"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@needs_chromium
def test_a_screenshot_at_800_pixels_shows_the_page(lab: Lab, tmp_path: Path) -> None:
    """The page renders: a screenshot 800 px wide, which the browser itself measures (a canvas
    over the PNG as a data: URL) for colours: the verdict's red band, text, not one blank colour."""
    [scan] = [s for s in lab.scans if is_disk(s)]
    shot = tmp_path / "page.png"
    chromium(
        tmp_path, "--window-size=800,2000", f"--screenshot={shot}", (lab.html / page_name(scan)).as_uri()
    )
    data = shot.read_bytes()
    assert png_size(data) == (800, 2000)
    probe = tmp_path / "probe.html"
    probe.write_text(
        "<!DOCTYPE html><body><canvas id=c width=800 height=2000></canvas><script>"
        "const i = new Image(); i.onload = () => { const c = document.getElementById('c').getContext('2d');"
        "c.drawImage(i, 0, 0); const d = c.getImageData(0, 0, 800, 2000).data; const seen = new Set();"
        "let dark = 0, red = 0, white = 0; for (let p = 0; p < d.length; p += 4) {"
        "const [r, g, b] = [d[p], d[p + 1], d[p + 2]]; seen.add((r << 16) | (g << 8) | b);"
        "if (r < 80 && g < 80 && b < 80) dark++; if (r > 150 && g < 40 && b < 60) red++;"
        "if (r > 245 && g > 245 && b > 245) white++; }"
        "document.body.setAttribute('data-result', JSON.stringify({colours: seen.size, dark, red, white}));};"
        f"i.src = 'data:image/png;base64,{base64.b64encode(data).decode()}';</script></body>",
        encoding="utf-8",
    )
    out = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    result = json.loads(dom(out).one("body").attrs["data-result"])
    pixels = 800 * 2000
    assert result["colours"] > 50, result  # text is anti-aliased: a blank page has one colour
    assert result["dark"] > pixels // 200, result  # text
    assert result["red"] > 800 * 40, result  # the priority match band (#b00020), 50 px or more high
    assert result["white"] > pixels // 4, result


@needs_chromium
def test_print_to_pdf_makes_a_document(lab: Lab, tmp_path: Path) -> None:
    [scan] = [s for s in lab.scans if is_disk(s)]
    pdf = tmp_path / "case.pdf"
    chromium(
        tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", (lab.html / page_name(scan)).as_uri()
    )
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 1


def test_the_templates_are_in_the_wheel() -> None:
    """pyproject's package-data names every file of station/templates (the wheel the appliance and
    stations install has no other way to find them)."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "station"
    ]
    templates = sorted(
        p.relative_to(root / "station").as_posix() for p in (root / "station" / "templates").iterdir()
    )
    assert templates and all(any(fnmatch.fnmatch(t, p) for p in patterns) for t in templates), templates
