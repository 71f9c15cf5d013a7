"""A scan stopped mid-way (Ctrl-C, a cancel) counts every file it found: read, empty, an error,
skipped, or not scanned. Ctrl-C used to lose the files the walk had not handed out yet and the rest
of the batch it was handing out ("0 files found but not read" with 1,430 found and 1,208 read)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from agent.scan import ScanReport
from agent.scan import engine as engine_module
from agent.scan.reader import DigestResult, read_digests
from agent.scan.reader_processes import close_idle
from agent.scan.summary import print_summary

from .conftest import FilterFactory, scan, warm, write_random

FILES = 1430


def tree(root: Path) -> list[Path]:
    """FILES clean files (and one empty) in 65 folders; returns a known file kept outside the tree."""
    for i in range(FILES):
        write_random(root / f"d{i % 13}" / f"s{i % 5}" / f"{i:05d}.jpg", 200 + i, i)
    (root / "d0" / "empty.jpg").write_bytes(b"")
    return [write_random(root.parent / "known.jpg", 5000, -1)]


def accounted(report: ScanReport) -> int:
    c = report.counts
    return c.files_read + c.files_empty + len(report.errors) + len(report.skipped) + c.files_not_scanned


def check(report: ScanReport, interrupted: bool = True) -> None:
    c = report.counts
    assert report.cancelled and not report.complete and report.verdict == "incomplete"
    assert 0 < c.files_read < FILES
    assert c.files_seen == accounted(report), (c, len(report.errors), len(report.skipped))
    if interrupted:  # (a cancel may find every batch handed out already read: none left)
        assert c.files_not_scanned > 0
    assert report.to_json()["counts"]["files_not_scanned"] == c.files_not_scanned


@pytest.fixture(autouse=True)
def _idle_processes() -> Any:
    yield
    close_idle()


@pytest.mark.parametrize("how", ["interrupt", "cancel"])
def test_one_worker_stopped_while_reading_a_batch(tmp_path: Path, filters: FilterFactory, how: str) -> None:
    """One worker: the walking thread reads; ^C lands in the middle of a batch's reads."""
    files = tree(tmp_path / "dev")
    cancel = threading.Event()
    reads = [0]

    def reader(fd: int, size: int, kinds: Sequence[str], stop: threading.Event | None) -> DigestResult:
        reads[0] += 1
        if reads[0] == 600:
            if how == "interrupt":
                raise KeyboardInterrupt
            cancel.set()
        return read_digests(fd, size, kinds, stop)

    report = scan(filters.make(files[:1], ("md5",)), tmp_path / "dev", 1, cancel=cancel, reader=reader)
    check(report, how == "interrupt")


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("how", ["interrupt", "cancel"])
def test_several_workers_stopped_while_handing_out(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch, how: str, processes: bool
) -> None:
    """Several workers (threads, or reader processes): ^C lands while the walking thread hands a
    batch out (the queue's ``put``, or a parcel to a process), with more files still to hand out."""
    files = tree(tmp_path / "dev")
    cancel = threading.Event()
    real_submit = engine_module._Run.submit
    submitted = [0]

    def submit(self: Any, batch: Any) -> None:
        submitted[0] += 1
        if submitted[0] == 40:
            if how == "interrupt":
                raise KeyboardInterrupt
            cancel.set()
        real_submit(self, batch)

    monkeypatch.setattr(engine_module._Run, "submit", submit)
    if processes:
        warm(2)
    f = filters.make(files[:1], ("md5",))
    report = scan(f, tmp_path / "dev", 3, cancel=cancel, reader_processes=processes)
    check(report, how == "interrupt")


def test_the_summary_says_how_many_were_not_read(tmp_path: Path, filters: FilterFactory) -> None:
    files = tree(tmp_path / "dev")
    cancel = threading.Event()

    def reader(fd: int, size: int, kinds: Sequence[str], stop: threading.Event | None) -> DigestResult:
        cancel.set()
        return read_digests(fd, size, kinds, stop)

    report = scan(filters.make(files[:1], ("md5",)), tmp_path / "dev", 1, cancel=cancel, reader=reader)
    check(report)
    out = StringIO()
    print_summary(report, out)
    text = out.getvalue()
    assert f"scan cancelled: {report.counts.files_not_scanned:,} files found but not read" in text
    assert "with 1 worker\n" in text


def test_a_complete_scan_has_nothing_not_scanned(tmp_path: Path, filters: FilterFactory) -> None:
    files = tree(tmp_path / "dev")
    for workers in (1, 3):
        report = scan(filters.make(files[:1], ("md5",)), tmp_path / "dev", workers)
        assert report.complete and report.counts.files_not_scanned == 0
        assert report.counts.files_seen == accounted(report) == FILES + 1
