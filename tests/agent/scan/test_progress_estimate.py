"""Progress the officer can see (issue 14, item 2): the totals are estimated before the walk has
found them (statvfs of the mounted filesystems; a phone's storages), so the fraction done
(``fraction_done``, the bay's and the progress line's) is above 0 and sensible from the first
progress event, never goes back, and reaches 1.0 at the end.

Real trees: a tmpfs mounted for the test (a plain folder with statvfs of its own filesystem), ext4
and FAT images mounted read-only by the ``Mounter``, a folder that is not the top of its filesystem
(no estimate: nothing is said before the walk is done) and a phone. Each file is read a few
milliseconds slowly (``Scanner(reader=...)``), so that the scan lasts long enough for progress
events while the walk goes on."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.demo.images import PartitionSpec, make_disk_image, missing_tools
from agent.device_scan import scan_mounted
from agent.devices.mounter import Mounter
from agent.phones.camera import Storage
from agent.phones.fake import FakePhone, FakePhoneBackend
from agent.phones.scan import scan_phone, storage_estimate
from agent.scan import Scanner
from agent.scan.estimate import UNKNOWN, filesystem_estimate, inode_counts_are_blocks, refined
from agent.scan.events import ScanEstimate, ScanEvent, ScanProgress, ScanStarted, fraction_done
from agent.scan.reader import CancelFlag, DigestResult, read_digests
from filters.model import ContrabandFilter

from .conftest import FilterFactory, write_random

FOLDERS = ("DCIM/Camera", "Download", "Documents/a", "Documents/b", "Music", "Android/data/app")


def tree(root: Path, per_folder: int, size: int = 1500) -> list[Path]:
    """Files in several folders (media folders first in the walk); returns them all."""
    files = []
    for n, folder in enumerate(FOLDERS):
        for i in range(per_folder):
            name = f"IMG_{i:04}.jpg" if folder == "DCIM/Camera" else f"f{i:04}.bin"
            files.append(write_random(root / folder / name, size + i, n * 1000 + i))
    return files


def slow(seconds: float) -> Any:
    def reader(fd: int, size: int, kinds: Sequence[str], cancel: CancelFlag | None) -> DigestResult:
        time.sleep(seconds)  # slow media
        return read_digests(fd, size, kinds, cancel)

    return reader


def progress_events(events: list[ScanEvent]) -> list[ScanProgress]:
    return [e for e in events if isinstance(e, ScanProgress)]


def check_fractions(events: list[ScanEvent], files: int) -> list[tuple[bool, float]]:
    """The fraction at each progress event, as (walk done, fraction): above 0 and at most the true
    fraction from the first one with a file done, never going back, 1.0 at the end."""
    progress = progress_events(events)
    assert progress, "no progress event"
    seen = [(p.walk_done, fraction_done(p)) for p in progress]
    during = [(p, f) for p, (_, f) in zip(progress, seen, strict=True) if not p.walk_done and p.files_done]
    assert during, "no progress event with a file done before the walk ended"
    first, fraction = during[0]
    assert fraction is not None and fraction > 0, "no fraction from the first progress event"
    true = first.files_done / files
    assert 0.75 * true <= fraction <= true, (fraction, true)  # close, and never ahead
    fractions = [f for _, f in seen if f is not None]
    assert len(fractions) == len(seen), "a fraction at every progress event"
    assert fractions == sorted(fractions), fractions  # monotonic non-decreasing (not even clamped)
    assert progress[-1].walk_done and fractions[-1] == 1.0
    assert progress[-1].files_estimated == files, "the real total once the walk is done"
    return [(p.walk_done, f) for p, f in zip(progress, fractions, strict=True)]


@pytest.fixture
def known_filter(tmp_path: Path, filters: FilterFactory) -> ContrabandFilter:
    return filters.make([write_random(tmp_path / "known.jpg", 50_000, 99)])


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A plain folder that is the top of its own filesystem (a tmpfs mounted for the test)."""
    folder = tmp_path / "stick"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", folder], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)


@pytest.mark.root
@pytest.mark.parametrize("workers", [1, 3])
def test_a_plain_folder_on_its_own_filesystem_shows_a_fraction_from_the_first_second(
    tmpfs: Path, known_filter: ContrabandFilter, workers: int
) -> None:
    files = tree(tmpfs, 80)
    folders = {parent for p in files for parent in p.relative_to(tmpfs).parents} - {Path(".")}
    events: list[ScanEvent] = []
    scanner = Scanner([known_filter], workers=workers, reader=slow(0.005 * workers))
    report = scanner.scan([tmpfs], events.append)  # the estimate: statvfs of the folder's filesystem
    assert report.verdict == "no_match"
    started = events[0]
    assert isinstance(started, ScanStarted)
    assert started.estimate.entries == 1 + len(folders) + len(files)  # tmpfs: root, folders, files
    seen = check_fractions(events, len(files))
    # the pattern's faster blink (past half) shows before the walk ends (with several workers the
    # walk ends with some 140 files of this tree not done yet: in the queue and waiting for lookup)
    assert any(not done and f >= 0.5 for done, f in seen), seen


def test_a_folder_that_is_not_the_top_of_its_filesystem_says_nothing_before_the_walk_ends(
    tmp_path: Path, known_filter: ContrabandFilter
) -> None:
    root = tmp_path / "case"
    files = tree(root, 20)
    assert filesystem_estimate([root]) == UNKNOWN  # the filesystem's figures are not this folder's
    events: list[ScanEvent] = []
    Scanner([known_filter], workers=1, reader=slow(0.004)).scan([root], events.append)
    progress = progress_events(events)
    before_walk_end = [fraction_done(p) for p in progress if not p.walk_done]
    assert before_walk_end and before_walk_end == [None] * len(before_walk_end)  # however many come after
    assert progress[-1].walk_done and fraction_done(progress[-1]) == 1.0
    assert progress[-1].files_estimated == len(files)


def test_file_roots_count_themselves(tmp_path: Path) -> None:
    one = write_random(tmp_path / "a.jpg", 1234, 1)
    two = write_random(tmp_path / "b.jpg", 4321, 2)
    assert filesystem_estimate([one, two, tmp_path / "missing"]) == ScanEstimate(2, 1234 + 4321)


def test_refining() -> None:
    by_inodes = ScanEstimate(entries=500, bytes=10**6, block_size=4096)
    # the entries not found yet count as files; never below what was found
    assert refined(
        by_inodes, walk_done=False, files_found=100, entries_found=110, bytes_found=0, files_sized=0
    ) == (490, 10**6)
    assert refined(
        by_inodes, walk_done=False, files_found=600, entries_found=620, bytes_found=2 * 10**6, files_sized=600
    ) == (600, 2 * 10**6)
    # the walk done: the real totals
    assert refined(
        by_inodes, walk_done=True, files_found=450, entries_found=470, bytes_found=900_000, files_sized=450
    ) == (450, 900_000)
    # FAT, btrfs, a phone: from the bytes, the mean size so far and half a block of slack each
    by_bytes = ScanEstimate(None, 100 * 10_000, 4096)
    files, _ = refined(
        by_bytes, walk_done=False, files_found=20, entries_found=22, bytes_found=80_000, files_sized=10
    )
    assert files == 100 * 10_000 // (8_000 + 2048)
    # nothing sized yet, or nothing known: no estimate
    assert refined(
        by_bytes, walk_done=False, files_found=20, entries_found=22, bytes_found=0, files_sized=0
    ) == (None, 10**6)
    assert refined(
        UNKNOWN, walk_done=False, files_found=5, entries_found=6, bytes_found=9, files_sized=1
    ) == (
        None,
        None,
    )


def test_fraction_done() -> None:
    def progress(**changes: Any) -> ScanProgress:
        values: dict[str, Any] = dict(
            elapsed_s=1.0, files_found=40, bytes_found=0, bytes_to_read=0, walk_done=False, files_done=10,
            bytes_read=0, hits=0, priority_hits=0, errors=0, bytes_per_s=0.0, files_per_s=0.0,
        )  # fmt: skip
        return ScanProgress(**(values | changes))

    assert fraction_done(progress(files_estimated=100)) == 0.1
    assert fraction_done(progress(files_estimated=20)) == 10 / 40  # more found than estimated
    assert fraction_done(progress()) is None  # no estimate: nothing known yet
    assert fraction_done(progress(), at_least=0.3) == 0.3
    assert fraction_done(progress(files_estimated=100), at_least=0.3) == 0.3  # never back
    # the walk done: by the bytes (files done over found, with bytes_to_read extrapolated per file)
    assert fraction_done(progress(walk_done=True, bytes_read=1000, bytes_to_read=4000)) == 0.25
    assert fraction_done(progress(walk_done=True)) == 10 / 40  # nothing read yet
    assert fraction_done(progress(walk_done=True, files_found=0, files_done=0)) == 1.0  # no file


@pytest.mark.root
@pytest.mark.parametrize("workers", [1, 3])
def test_an_ext4_image_mounted_read_only_shows_a_fraction_from_the_first_second(
    tmp_path: Path, known_filter: ContrabandFilter, workers: int
) -> None:
    staging = tmp_path / "staging"
    paths = tree(staging, 80)
    image = make_disk_image(
        tmp_path / "fieldtriage-test-ext4.img",
        "mbr",
        [PartitionSpec("ext4", {p.relative_to(staging).as_posix(): p.read_bytes() for p in paths})],
    )
    with Mounter(tmp_path / "run").mount(str(image)) as mounted:
        (root,) = mounted.roots()
        fs = os.statvfs(root)
        assert mounted.estimate.entries == fs.f_files - fs.f_ffree  # taken at mount
        assert mounted.estimate.bytes == (fs.f_blocks - fs.f_bfree) * fs.f_frsize
        events: list[ScanEvent] = []
        scanner = Scanner([known_filter], workers=workers, reader=slow(0.005 * workers))
        result = scan_mounted(mounted, scanner, on_event=events.append)
    assert result.verdict == "no_match"
    started = events[0]
    assert isinstance(started, ScanStarted) and started.estimate == mounted.estimate
    seen = check_fractions(events, len(paths))
    assert any(not done and f >= 0.5 for done, f in seen), seen


@pytest.mark.root
@pytest.mark.parametrize("kind", ["vfat", "exfat"])
def test_a_fat_stick_is_estimated_from_its_bytes(
    tmp_path: Path, known_filter: ContrabandFilter, kind: str
) -> None:
    """FAT keeps no inodes: the kernel says 0, its FUSE drivers count clusters; the files are then
    estimated from the used bytes and the mean size of the files read so far."""
    if missing_tools([kind]):
        pytest.skip(f"needs the {kind} tools")
    files = {
        f"{folder}/f{i:03}.jpg": os.urandom(100_000 + 37 * i) for folder in FOLDERS[:3] for i in range(40)
    }
    # (files of photo size: the 2 MiB exFAT keeps before its clusters are some 15 % of these 12 MB,
    # the few tens of MiB of a stick of gigabytes much less)
    spec = PartitionSpec(kind, files, size=24 << 20)
    image = make_disk_image(tmp_path / f"fieldtriage-test-{kind}.img", "mbr", [spec])
    with Mounter(tmp_path / "run").mount(str(image)) as mounted:
        if not mounted.mounted_partitions():
            pytest.skip(f"{kind} cannot be mounted here: {mounted.problems()}")
        (root,) = mounted.roots()
        fs = os.statvfs(root)
        assert mounted.estimate.entries is None, (fs, "FAT's inode figures are not its files")
        assert fs.f_files == 0 or inode_counts_are_blocks(fs)
        assert mounted.estimate.bytes and mounted.estimate.bytes >= sum(map(len, files.values()))
        events: list[ScanEvent] = []
        scan_mounted(mounted, Scanner([known_filter], workers=1, reader=slow(0.03)), on_event=events.append)
    progress = progress_events(events)
    during = [p for p in progress if not p.walk_done and p.bytes_found]
    assert any(p.files_done for p in during), "no progress event with a file done before the walk ended"
    for p in during:  # from the first file opened
        assert p.files_estimated is not None
        assert 0.8 * len(files) <= p.files_estimated <= 1.25 * len(files), p
    fractions = [fraction_done(p) for p in progress if p.files_done]
    assert all(f is not None and f > 0 for f in fractions) and fractions[-1] == 1.0


class SlowSession:
    """A phone session whose reads take a few milliseconds each, as over a cable."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.partial_reads = session.partial_reads

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def read(self, folder: str, name: str, offset: int, length: int) -> bytes:
        time.sleep(0.002)
        return bytes(self.session.read(folder, name, offset, length))


def test_a_phone_is_estimated_from_its_storages(known_filter: ContrabandFilter) -> None:
    content = {f"{folder}/f{i:03}.jpg": os.urandom(30_000) for folder in FOLDERS for i in range(20)}
    used = sum(map(len, content.values()))
    storages = [
        Storage("/store_00010001", "Internal shared storage", 0x00010001, 64 << 30, (64 << 30) - used)
    ]
    assert storage_estimate(storages) == ScanEstimate(None, used)
    assert storage_estimate([Storage("/store_00010001", "x", 1, None, None)]) == UNKNOWN
    events: list[ScanEvent] = []
    phone = FakePhone({"Internal shared storage": content})
    with FakePhoneBackend({"usb:001,002": phone}).open("usb:001,002") as session:
        report = scan_phone(SlowSession(session), storages, Scanner([known_filter]), events.append)
    assert report.verdict == "no_match"
    started = events[0]
    assert isinstance(started, ScanStarted) and started.estimate == ScanEstimate(None, used)
    check_fractions(events, len(content))
