"""events and order: hits stream out at once, progress is throttled, likely media is read first,
stop-at-first-priority, and identical reports for any worker count."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agent.scan import ScanEvent, ScanFinished, ScanHit, Scanner, ScanProgress, ScanStarted
from agent.scan.reader import DigestResult, open_regular, read_digests
from filters.builder import FilterBuilder
from filters.importers import DigestEntry

from .conftest import FilterFactory, write_random


def phone(root: Path, clean: int) -> Path:
    """Clean app files first in name order, one known photo deep in the camera folder."""
    for i in range(clean):
        write_random(root / "Android" / "data" / f"app{i % 7}" / f"{i}.db", 200 + i, i)
        if i % 10 == 0:
            write_random(root / "aaa-notes" / f"{i}.txt", 100 + i, -i)
    return write_random(root / "DCIM" / "Camera" / "IMG_9999.jpg", 90_000, 424242)


def test_the_camera_photo_is_read_first_and_the_hit_streams_out(
    tmp_path: Path, filters: FilterFactory
) -> None:
    root = tmp_path / "device"
    known = phone(root, 300)
    f = filters.make([known])
    order: list[str] = []
    events: list[ScanEvent] = []

    def reader(fd: int, size: int, kinds: Sequence[str], cancel: threading.Event | None) -> DigestResult:
        order.append(os.readlink(f"/proc/self/fd/{fd}"))
        time.sleep(0.002)  # slow media: the scan lasts long enough for progress events
        return read_digests(fd, size, kinds, cancel)

    report = Scanner([f], workers=1, reader=reader).scan([root], events.append)
    assert order[0] == str(known)
    assert isinstance(events[0], ScanStarted) and isinstance(events[-1], ScanFinished)
    assert events[-1].report is report
    hit_at = next(i for i, e in enumerate(events) if isinstance(e, ScanHit))
    progress_at = [i for i, e in enumerate(events) if isinstance(e, ScanProgress)]
    assert progress_at and hit_at < progress_at[-1], "the hit came only at the end"
    assert len(progress_at) <= report.timings.elapsed_s / 0.25 + 2
    files_done = [e.files_done for e in events if isinstance(e, ScanProgress)]
    assert files_done == sorted(files_done)
    assert report.timings.first_priority_hit_s is not None
    assert report.timings.first_priority_hit_s < report.timings.elapsed_s / 2


def test_stop_at_first_priority(tmp_path: Path, filters: FilterFactory) -> None:
    root = tmp_path / "device"
    known = phone(root, 200)
    report = Scanner([filters.make([known])], workers=1, stop_at_first_priority=True).scan([root])
    assert report.verdict == "priority_match" and report.stopped_at_first_priority and not report.complete
    assert report.counts.files_read < 200


def test_reports_are_identical_for_1_and_8_workers(tmp_path: Path, filters: FilterFactory) -> None:
    root = tmp_path / "device"
    known = phone(root, 400)
    extra = [write_random(root / "Download" / f"k{i}.mp4", 100_000 * i + 1, 77 + i) for i in range(1, 6)]
    (root / "Download" / "link.jpg").symlink_to(known)
    os.mkfifo(root / "Download" / "pipe")
    f = filters.make([known, *extra[:3]], ("sample", "md5"))
    g = filters.make(extra[2:], ("sha256",), priority="other", from_content=False)

    def opener(dir_fd: int, name: bytes) -> tuple[int, int]:
        if name.endswith(b"7.db"):
            raise PermissionError(13, "Permission denied")
        return open_regular(dir_fd, name)

    documents = []
    for workers in (1, 8):
        for mode in ("auto", "full"):
            report = Scanner([f, g], mode=mode, workers=workers, opener=opener).scan([root])  # type: ignore[arg-type]
            assert report.timings.workers == workers
            documents.append(report.to_json(timings=False))
    assert documents[0] == documents[2] and documents[1] == documents[3]
    assert documents[0]["verdict"] == "priority_match" and len(documents[0]["hits"]) == 6
    assert len(documents[0]["errors"]) == 40 and len(documents[0]["skipped"]) == 2


def test_cancel_ends_the_read_of_a_huge_file_at_once(tmp_path: Path) -> None:
    """One worker (the default for a rotational disk) reads in the walking thread, which then
    never looks at the scan's cancel flag: a cancel (Ctrl-C, SIGTERM, a device pulled, the agent
    stopping) used to wait for the end of the file, here 64 GiB of holes (hours on a sparse file
    claiming exabytes)."""
    root = tmp_path / "device"
    root.mkdir()
    with (root / "movie.mp4").open("wb") as f:
        f.truncate(64 << 30)  # sparse: no block on the disk
    builder = FilterBuilder(name="md5 list")
    builder.add(DigestEntry("md5", bytes(16), "known", "priority"))  # not covered: every file read whole
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        report = Scanner([builder.build_unsigned()], workers=1, cancel=cancel).scan([os.fsencode(root)])
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert report.cancelled and report.verdict == "incomplete" and report.counts.files_not_scanned == 1
