"""The small-file fast path: the engine opens, checks and hashes a file inline (no lstat in the walk,
sizes from the fstat at open); the same results, counts and checks as ``open_regular`` and
``read_digests``, for any worker count."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from agent.scan import ScanEvent, Scanner, ScanProgress
from agent.scan import walker as walker_module
from agent.scan.order import is_media_name, split_media
from agent.scan.reader import buffer_digester, open_regular, read_digests
from filters.digests import DIGEST_KINDS

from .conftest import FilterFactory, all_files, scan, tree_size, warm, write_random


def small_tree(root: Path) -> list[Path]:
    files = [write_random(root / f"d{i % 5}" / f"{i:04d}.dat", 1 + i * 37, i) for i in range(120)]
    files.append(write_random(root / "DCIM" / "IMG_0001.JPG", 70_000, 999))
    for i in range(3):
        (root / f"d{i}" / f"empty{i}").write_bytes(b"")
    return files


@pytest.mark.parametrize(
    "kinds", [("md5",), ("blake3",), ("sha1",), ("sha256",), ("md5", "sample"), tuple(DIGEST_KINDS)]
)
def test_buffer_digests_equal_read_digests(tmp_path: Path, kinds: tuple[str, ...]) -> None:
    digest = buffer_digester(kinds)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for size in (1, 100, 49_152, 70_000, 1 << 20):
            write_random(tmp_path / f"f{size}", size, size)
            fd, opened_size = open_regular(dir_fd, b"f%d" % size)
            try:
                expected = read_digests(fd, opened_size, kinds).digests
                os.lseek(fd, 0, os.SEEK_SET)
                assert digest(os.read(fd, size)) == expected
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def test_split_media_is_is_media_name() -> None:
    names = [b"a.jpg", b"B.JPG", b"jpg", b"x.", b".mp4", b"a.b.mov", b"notes.txt", b"\xff.png", b"", b"."]
    names += [b"a.jpg\n", b"a.jpgx", b"IMG.HeIc", b"no_dot", b"..ts"]
    plain, media = split_media(names)
    assert media == [n for n in names if is_media_name(n)]
    assert plain == [n for n in names if not is_media_name(n)]


def test_counts_and_progress_from_the_fstat_at_open(tmp_path: Path, filters: FilterFactory) -> None:
    root = tmp_path / "device"
    files = small_tree(root)
    f = filters.make(files[:2], ("md5",))
    documents = []
    for workers in (1, 3):
        events: list[ScanEvent] = []
        report = Scanner([f], mode="full", workers=workers).scan([root], events.append)
        assert report.verdict == "priority_match" and report.complete and len(report.hits) == 2
        counts = report.counts
        assert counts.files_seen == len(all_files(root)) == 124
        assert counts.bytes_seen == tree_size(root) == counts.bytes_read
        assert counts.files_empty == 3 and counts.files_read == 121
        last = [e for e in events if isinstance(e, ScanProgress)]
        final = Scanner([f], mode="full", workers=workers).scan([root])
        assert final.to_json(timings=False) == report.to_json(timings=False)
        for progress in last:
            assert progress.bytes_read <= progress.bytes_to_read
            assert progress.files_done <= progress.files_found
        documents.append(report.to_json(timings=False))
    assert documents[0] == documents[1]


def test_progress_estimate_is_exact_when_done(tmp_path: Path, filters: FilterFactory) -> None:
    from agent.scan.engine import _Run

    root = tmp_path / "device"
    small_tree(root)
    outside = write_random(tmp_path / "outside" / "other", 100, 5)
    scanner = Scanner([filters.make([outside], ("md5",))], mode="full", workers=1)
    run = _Run(scanner, (os.fsencode(root),), None)
    report = run.run()
    progress = run.progress()
    assert progress.walk_done and progress.files_done == progress.files_found == report.counts.files_seen
    assert progress.bytes_to_read == progress.bytes_read == report.counts.bytes_read
    assert progress.bytes_found == report.counts.bytes_seen and progress.eta_s == 0.0


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_file_replaced_after_listing_is_not_opened_as_another_type(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch, applied: list[int], workers: int
) -> None:
    """Listed as a regular file (d_type), then replaced by a FIFO, a symlink to known material and
    a folder before it is opened: none is read, each is recorded, the verdict is not no_match.
    With 2 or 3 workers a reader process opens them (the same checks in another process)."""
    root = tmp_path / "device"
    known = write_random(tmp_path / "outside" / "known.jpg", 5000, 1)
    for name in ("fifo", "link", "folder", "gone", "plain"):
        write_random(root / name, 100, hash(name) % 1000)
    original = walker_module.TreeWalker._add_files

    def swap(self: walker_module.TreeWalker, directory: object, files: list[bytes], klass: int) -> None:
        if b"fifo" in files:
            for name in ("fifo", "link", "folder", "gone"):
                (root / name).unlink()
            os.mkfifo(root / "fifo")
            (root / "link").symlink_to(known)
            (root / "folder").mkdir()
        original(self, directory, files, klass)  # type: ignore[arg-type]

    monkeypatch.setattr(walker_module.TreeWalker, "_add_files", swap)
    if workers > 1:
        warm(workers - 1)  # ready at once: the batch goes to a process, not the scanning thread
    report = scan(filters.make([known], ("md5",)), root, workers)
    assert applied == ([5] if workers > 1 else [])
    assert report.verdict == "incomplete" and not report.hits
    assert report.counts.files_seen == 5 and report.counts.files_read == 1
    skipped = {os.path.basename(p.path): p.code for p in report.skipped}
    assert skipped == {b"fifo": "changed_type", b"link": "symlink", b"folder": "changed_type"}
    assert [(os.path.basename(p.path), p.code) for p in report.errors] == [(b"gone", "ENOENT")]


def test_noatime_refused_is_retried_without_it(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_NOATIME on a file of another owner fails with EPERM (without CAP_FOWNER): opened again
    without it, still with O_NOFOLLOW and O_NONBLOCK."""
    root = tmp_path / "device"
    files = small_tree(root)
    real_open = os.open
    flags_seen: list[int] = []

    def fake_open(path: object, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if isinstance(path, bytes) and path.endswith(b".dat"):
            flags_seen.append(flags)
            if flags & getattr(os, "O_NOATIME", 0):
                raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_open(path, flags, mode, dir_fd=dir_fd)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)
    report = Scanner([filters.make(files[:1], ("md5",))], mode="full", workers=1).scan([root])
    assert report.verdict == "priority_match" and report.complete and report.counts.files_read == 121
    assert all(f & os.O_NOFOLLOW and f & os.O_NONBLOCK for f in flags_seen)


def test_a_small_file_that_grows_just_after_its_read_is_an_error(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one read of size + 1 bytes sees the old size; the fstat after reading catches it."""
    root = tmp_path / "device"
    files = small_tree(root)
    grown = files[5]
    real_read = os.read

    def read_then_grow(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if os.readlink(f"/proc/self/fd/{fd}") == str(grown):
            with grown.open("ab") as out:
                out.write(b"more")
        return data

    monkeypatch.setattr(os, "read", read_then_grow)
    report = Scanner([filters.make(files[:1], ("md5",))], mode="full", workers=1).scan([root])
    assert report.verdict == "priority_match" and not report.complete
    assert [(p.path, p.code) for p in report.errors] == [(os.fsencode(grown), "changed")]
