"""``scan --image`` / ``scan --device`` and ``devices``: the daemon's path, from the command line."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.demo.images import PartitionSpec, make_disk_image, missing_tools
from agent.device_scan import scan_device
from agent.devices.mount_rules import kernel_filesystems
from agent.devices.mounter import Mounter
from agent.devices.overlay import xmount_available
from agent.scan import Scanner
from agent.scan.reader_processes import ReaderPool
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key

from .conftest import TEST_MATCH
from .devices.conftest import leftovers
from .devices.images import evidence_loop, fat_with_a_folder_loop, image_digest

pytestmark = [pytest.mark.root]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A filter (and its trust key) that knows one generated file."""
    known = os.urandom(80_000)
    (tmp_path / "known.bin").write_bytes(known)
    key, public = generate_key_pair(tmp_path / "lab")
    builder = FilterBuilder(name="lab")
    for kind, digest in digest_path(tmp_path / "known.bin", ["sample", "blake3"]).items():
        builder.add(DigestEntry(kind, digest, "known", "priority", from_content=True))
    write_filter(tmp_path / "lab.ftf", builder.build_unsigned(), load_private_key(key))
    return tmp_path / "lab.ftf", public, known


def run_scan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    status = main(["scan", *args, "--json"])
    return status, json.loads(capsys.readouterr().out)


def scan_as_json_and_text(
    capsys: pytest.CaptureFixture[str], filter_path: Path, public: Path, image: Path
) -> tuple[int, dict[str, object], int, str]:
    """``scan --device`` of ``image`` on a read-only loop device, as JSON and as text (status and
    output of each); the loop device took no write."""
    args = ["--filter", str(filter_path), "--trust", str(public), "--device"]
    with evidence_loop(image) as evidence:
        status, report = run_scan(capsys, *args, evidence.path)
        text_status = main(["scan", *args, evidence.path])
        text = capsys.readouterr().out
        assert evidence.sectors_written() == 0
    return status, report, text_status, text


def test_image_with_a_known_file_and_a_luks_partition(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if missing_tools(["vfat", "luks"]):
        pytest.skip("needs mtools, dosfstools and cryptsetup")
    filter_path, public, known = lab
    image = make_disk_image(
        tmp_path / "evidence.img",
        "gpt",
        [PartitionSpec("vfat", {"DCIM/x.jpg": known}), PartitionSpec("luks")],
    )
    before = image_digest(image)
    status, report = run_scan(
        capsys, "--filter", str(filter_path), "--trust", str(public), "--image", str(image)
    )
    assert status == 1 and report["verdict"] == "priority_match"
    partitions = report["partitions"]
    assert isinstance(partitions, list)
    assert [(p["fs_type"], p["mounted"]) for p in partitions] == [("vfat", True), ("crypto_LUKS", False)]
    assert "encrypted volume (LUKS)" in partitions[1]["problem"]
    scan = report["scan"]
    assert isinstance(scan, dict)
    assert [h["path"] for h in scan["hits"]] == ["p1/DCIM/X.JPG"] or [
        h["path"].lower() for h in scan["hits"]
    ] == ["p1/dcim/x.jpg"]
    assert image_digest(image) == before


def test_device_without_a_match_but_with_an_unreadable_part_is_incomplete(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filter_path, public, _ = lab
    image = make_disk_image(
        tmp_path / "fieldtriage-test-dev.img",
        "dos",
        [PartitionSpec("ext4", {"a.txt": b"a" * 100}), PartitionSpec("raw")],
    )
    with evidence_loop(image) as evidence:
        status, report = run_scan(
            capsys, "--filter", str(filter_path), "--trust", str(public), "--device", evidence.path
        )
        assert evidence.sectors_written() == 0
    assert status == 3 and report["verdict"] == "incomplete"
    assert report["device_problems"] == [
        "partition 2: no filesystem recognised (unformatted, unknown or damaged)"
    ]
    assert leftovers(Path("/nonexistent")) == []


def test_an_image_that_is_not_a_disk_image_says_so(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``scan --image`` of a text file: "no partition table or filesystem found", exit 3 (incomplete,
    never green), as for a blank disk in a kiosk bay; before, only "partition 0: no filesystem"."""
    filter_path, public, _ = lab
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"synthetic notes, not a disk image\n" * 200)
    args = ["scan", "--filter", str(filter_path), "--trust", str(public), "--image", str(notes)]
    capsys.readouterr()
    assert main(args) == 3
    text = capsys.readouterr().out
    assert "  not checked: no partition table or filesystem found (not a disk or partition image" in text
    status, report = run_scan(capsys, *args[1:])
    assert status == 3 and report["verdict"] == "incomplete"
    assert report["device_problems"] == [
        "no partition table or filesystem found (not a disk or partition image, or unformatted or damaged)"
    ]


def test_usage_errors_are_one_line(lab: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    filter_path, public, _ = lab
    cases = [
        (["--image", str(tmp_path)], "not a regular file"),
        (["--device", str(tmp_path / "lab.ftf")], "not a block device"),
        (["--image", str(tmp_path / "none.img")], "no such device or image"),
        (
            ["--image", str(filter_path), str(tmp_path)],
            "give folders to scan, or one --device, --image or --phone",
        ),
    ]
    for extra, reason in cases:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "scan",
                "--filter",
                str(filter_path),
                "--trust",
                str(public),
                *extra,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, done.stderr
        assert reason in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.udev
def test_devices_lists_and_watches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], udev_test_rule: None
) -> None:
    image = tmp_path / "fieldtriage-test-watch.img"
    with image.open("wb") as f:
        f.truncate(4 << 20)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "devices", "watch", "--json", "--match", TEST_MATCH],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        with evidence_loop(image) as evidence:
            events = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and watcher.stdout is not None:
                if not select.select([watcher.stdout], [], [], 1.0)[0]:
                    continue
                events.append(json.loads(watcher.stdout.readline()))
                if events[-1]["devnode"] == evidence.path:
                    break
            assert events, "no event within 10 s"
            assert events[-1]["event"] == "plugged" and events[-1]["devnode"] == evidence.path
            assert events[-1]["backing_file"] == str(image)
            capsys.readouterr()
            assert main(["devices", "--json", "--match", f"DEVNAME={evidence.path}"]) == 0
            (listed,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
            assert listed["devnode"] == evidence.path and listed["size"] == 4 << 20 and listed["taken"]
    finally:
        watcher.kill()
        watcher.wait()


def test_reader_processes_read_real_mounts_like_one_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reader_pools: list[ReaderPool]
) -> None:
    """--workers 3 (reader processes: a whole-file filter, nothing to confirm) on real read-only
    mounts, a kernel ext4 and a FUSE vfat partition: the same report as one worker, nothing written."""
    if missing_tools(["vfat"]):
        pytest.skip("needs mtools and dosfstools")
    files = {f"DCIM/Camera/IMG_{i:04d}.jpg": os.urandom(3_000 + 997 * i) for i in range(60)}
    files["Download/big.bin"] = os.urandom(3 << 20)
    known = files["DCIM/Camera/IMG_0042.jpg"]
    (tmp_path / "known.bin").write_bytes(known)
    key, public = generate_key_pair(tmp_path / "lab")
    builder = FilterBuilder(name="whole-file only")
    builder.add(DigestEntry("md5", digest_path(tmp_path / "known.bin", ["md5"])["md5"], "known", "priority"))
    write_filter(tmp_path / "md5.ftf", builder.build_unsigned(), load_private_key(key))
    image = make_disk_image(
        tmp_path / "fieldtriage-test-procs.img",
        "dos",
        [PartitionSpec("ext4", files), PartitionSpec("vfat", files)],
    )
    reports = {}
    with evidence_loop(image) as evidence:
        for workers in ("1", "3"):
            status, report = run_scan(
                capsys, "--filter", str(tmp_path / "md5.ftf"), "--trust", str(public),
                "--workers", workers, "--device", evidence.path,
            )  # fmt: skip
            assert status == 1, report
            scan = report["scan"]
            assert isinstance(scan, dict)
            reports[workers] = {k: scan[k] for k in ("verdict", "counts", "hits", "errors", "skipped")}
        assert evidence.sectors_written() == 0
    assert reports["1"] == reports["3"]
    assert [pool.count for pool in reader_pools] == [2], "--workers 3: one scan, two processes"
    hits = reports["1"]["hits"]
    assert isinstance(hits, list)
    assert sorted(h["path"].lower() for h in hits) == [
        "p1/dcim/camera/img_0042.jpg",
        "p2/dcim/camera/img_0042.jpg",
    ]
    assert leftovers(Path("/nonexistent")) == []


# not xfs: it writes an unlink's metadata in place at once, so no view holds the file any more
@pytest.mark.parametrize("kind", ["ext4", "btrfs"])
def test_known_file_the_replay_deletes_is_still_found(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """The known file is on disk, its deletion only in the journal: the replayed view no longer
    has it, the on-disk view still does, and it counts."""
    if missing_tools([kind]) or not xmount_available():
        pytest.skip(f"needs the {kind} tools and xmount")
    filter_path, public, known = lab
    files = {"DCIM/kept.jpg": os.urandom(9_000), "DCIM/gone.jpg": known}
    spec = PartitionSpec(kind, files, journal_deletes=("DCIM/gone.jpg",))
    image = make_disk_image(tmp_path / f"fieldtriage-test-{kind}-deleted.img", "dos", [spec])
    before = image_digest(image)
    with evidence_loop(image) as evidence:
        status, report = run_scan(
            capsys, "--filter", str(filter_path), "--trust", str(public), "--device", evidence.path
        )
        assert evidence.sectors_written() == 0
    (part,) = report["partitions"]  # type: ignore[misc]
    assert part["needs_recovery"] is True and part["replayed"], part
    scan = report["scan"]
    assert isinstance(scan, dict)
    assert [h["path"] for h in scan["hits"]] == ["p1/DCIM/gone.jpg"], scan["hits"]  # not in p1-replayed
    assert status == 1 and report["verdict"] == "priority_match"
    assert image_digest(image) == before


def test_gpt_whose_primary_header_is_wiped_is_read_from_its_backup(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the primary header is gone and its entry array agrees with the backup's: every
    partition is read, the device can be green, and the report notes the backup."""
    filter_path, public, _ = lab
    image = make_disk_image(
        tmp_path / "fieldtriage-test-backup-gpt.img", "gpt", [PartitionSpec("ext4", {"a.txt": b"a" * 100})]
    )
    with image.open("r+b") as f:
        f.seek(512)
        f.write(bytes(512))
    status, report, text_status, text = scan_as_json_and_text(capsys, filter_path, public, image)
    assert status == text_status == 0 and report["verdict"] == "no_match", report
    assert report["device_problems"] == []
    assert report["device_notes"] == [
        "primary GPT header missing; read from the backup header (the entry arrays agree)"
    ]
    assert "note: primary GPT header missing; read from the backup header" in text, text


@pytest.mark.parametrize("kind", ["ext4", "xfs", "btrfs"])
def test_known_file_only_in_the_journal_is_found(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """The stick was pulled without unmounting: the known file was written with fsync, so only the
    journal (log, log tree) has it. A no-replay mount alone showed green."""
    if missing_tools([kind]) or not xmount_available():
        pytest.skip(f"needs the {kind} tools and xmount")
    filter_path, public, known = lab
    spec = PartitionSpec(kind, {"DCIM/old.jpg": os.urandom(9_000)}, journal_only={"DCIM/new.jpg": known})
    image = make_disk_image(tmp_path / f"fieldtriage-test-{kind}-pulled.img", "dos", [spec])
    before = image_digest(image)
    status, report, text_status, text = scan_as_json_and_text(capsys, filter_path, public, image)
    assert text_status == 1
    assert "also read replayed onto a copy-on-write layer (xmount), as p1-replayed" in text, text
    assert status == 1 and report["verdict"] == "priority_match", report
    scan = report["scan"]
    assert isinstance(scan, dict) and [h["path"] for h in scan["hits"]] == ["p1-replayed/DCIM/new.jpg"]
    (part,) = report["partitions"]  # type: ignore[misc]
    assert part["needs_recovery"] is True and part["recovery"] and part["replayed"]["layer"]
    assert image_digest(image) == before

    runtime = tmp_path / "run"
    scanner = Scanner([load_filter(filter_path, TrustStore.from_paths([public]))])
    with evidence_loop(image) as evidence:
        result = scan_device(evidence.path, Mounter(runtime, overlay=None), scanner)
    assert result.verdict == "incomplete"
    assert any("journal needs recovery" in p for p in result.device_problems), result.device_problems
    assert image_digest(image) == before


def test_ntfs_named_streams_are_read(
    lab: tuple[Path, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A whole known file hidden in an alternate data stream (of a file, a folder, the root)."""
    if missing_tools(["ntfs"]):
        pytest.skip("needs ntfs-3g")
    filter_path, public, known = lab

    def hide(root: Path) -> None:
        (root / "Documents").mkdir()
        (root / "Documents" / "notes.txt").write_bytes(b"shopping list\n")
        (root / "Documents" / "notes.txt:hidden.jpg").write_bytes(known)
        (root / "Documents:folder.jpg").write_bytes(known)
        (root / ":root.jpg").write_bytes(known)
        (root / "Documents" / "notes.txt:Zone.Identifier").write_bytes(b"[ZoneTransfer]\r\nZoneId=3\r\n")

    image = make_disk_image(
        tmp_path / "fieldtriage-test-ads.img", "dos", [PartitionSpec("ntfs", prepare=hide)]
    )
    before = image_digest(image)
    with evidence_loop(image) as evidence:
        status, report = run_scan(
            capsys, "--filter", str(filter_path), "--trust", str(public), "--device", evidence.path
        )
        assert evidence.sectors_written() == 0
    assert status == 1 and report["verdict"] == "priority_match", report
    scan = report["scan"]
    assert isinstance(scan, dict)
    assert sorted(h["path"] for h in scan["hits"]) == [
        "p1/:root.jpg", "p1/Documents/notes.txt:hidden.jpg", "p1/Documents:folder.jpg",
    ]  # fmt: skip
    assert scan["errors"] == [] and scan["counts"]["files_seen"] == 5
    assert image_digest(image) == before


def test_sigterm_stops_a_scan_that_never_ends_and_leaves_nothing_behind(
    lab: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    """A walk that never ends (a FAT folder loop through fusefat): SIGTERM (timeout, systemd, a
    script) cancels it like Ctrl-C, and the mounts, loop devices and FUSE driver are taken down;
    it used to kill the process and leave all three."""
    if missing_tools(["vfat"]) or shutil.which("fusefat") is None or "vfat" in kernel_filesystems():
        pytest.skip("needs mtools, dosfstools and fusefat, and no vfat kernel driver (its walk ends)")
    filter_path, public, _ = lab
    image = tmp_path / "fieldtriage-test-sigterm.img"
    fat_with_a_folder_loop(image)
    scan = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "scan", "--filter", str(filter_path), "--trust", str(public),
         "--image", str(image), "--json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)
    scan.send_signal(signal.SIGTERM)
    out, err = scan.communicate(timeout=60)
    assert scan.returncode == 3, err
    report = json.loads(out)
    assert report["verdict"] == "incomplete" and report["scan"]["cancelled"] is True
    assert "fieldtriage-test-sigterm" not in Path("/proc/self/mountinfo").read_text()
    loops = subprocess.run(["losetup", "-l", "-n", "-O", "BACK-FILE"], capture_output=True, text=True).stdout
    assert str(image) not in loops
