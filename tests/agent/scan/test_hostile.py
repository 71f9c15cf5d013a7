"""Hostile trees: symlinks, FIFOs, devices, unreadable, vanishing and changing files, I/O errors,
huge folders, deep nesting, bind-mount loops and hostile names."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent.scan import Scanner, ScanReport
from agent.scan.names import path_from_b64
from agent.scan.reader import DigestResult, open_regular, read_digests
from agent.scan.summary import print_summary
from filters.model import ContrabandFilter

from .conftest import FilterFactory, write_random


def scan_with_timeout(scanner: Scanner, roots: Sequence[Path | bytes], timeout: float = 20) -> ScanReport:
    result: list[ScanReport] = []
    thread = threading.Thread(target=lambda: result.append(scanner.scan(list(roots))), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "scan hung"
    return result[0]


@pytest.fixture
def known(tmp_path: Path, filters: FilterFactory) -> tuple[Path, ContrabandFilter]:
    path = write_random(tmp_path / "outside" / "known.jpg", 60_000, 7)
    return path, filters.make([path], ("sample", "sha1"))


def test_symlinks_to_known_material_are_not_followed(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    path, f = known
    root = tmp_path / "device"
    (root / "DCIM").mkdir(parents=True)
    (root / "DCIM" / "link.jpg").symlink_to(path)
    (root / "linked-folder").symlink_to(path.parent, target_is_directory=True)
    report = Scanner([f], workers=2).scan([root])
    assert report.verdict == "no_match" and not report.hits
    assert sorted(p.code for p in report.skipped) == ["symlink", "symlink"]
    assert report.counts.skipped == {"symlink": 2}


def test_fifos_and_devices_are_skipped_never_opened(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    _, f = known
    root = tmp_path / "device"
    root.mkdir()
    os.mkfifo(root / "pipe.jpg")
    codes = ["fifo"]
    if os.geteuid() == 0:
        os.mknod(root / "null.jpg", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
        codes.append("char_device")
    write_random(root / "ok.jpg", 100, 1)
    report = scan_with_timeout(Scanner([f], workers=2), [root])
    assert report.verdict == "no_match"
    assert sorted(p.code for p in report.skipped) == sorted(codes)


def failing_opener(names: dict[bytes, int]) -> Callable[[int, bytes], tuple[int, int]]:
    def opener(dir_fd: int, name: bytes) -> tuple[int, int]:
        if name in names:
            raise OSError(names[name], os.strerror(names[name]))
        return open_regular(dir_fd, name)

    return opener


def test_an_unreadable_file_makes_a_clean_scan_incomplete(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    path, f = known
    root = tmp_path / "device"
    write_random(root / "secret.jpg", 100, 1)
    write_random(root / "fine.jpg", 100, 2)
    opener = failing_opener({b"secret.jpg": errno.EACCES})
    report = Scanner([f], workers=2, opener=opener).scan([root])
    assert report.verdict == "incomplete" and report.exit_status == 3 and not report.complete
    (error,) = report.errors
    assert (
        error.path.endswith(b"/secret.jpg") and error.code == "EACCES" and "Permission denied" in error.reason
    )
    # ... unless something matched
    (root / "known.jpg").write_bytes(path.read_bytes())
    assert Scanner([f], workers=2, opener=opener).scan([root]).verdict == "priority_match"


def test_io_errors_while_reading_are_reported(tmp_path: Path, known: tuple[Path, ContrabandFilter]) -> None:
    _, f = known
    root = tmp_path / "device"
    write_random(root / "bad-sector.jpg", 100_000, 1)
    write_random(root / "fine.jpg", 100, 2)

    def reader(fd: int, size: int, kinds: Sequence[str], cancel: threading.Event | None) -> DigestResult:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("bad-sector.jpg"):
            raise OSError(errno.EIO, "Input/output error")
        return read_digests(fd, size, kinds, cancel)

    report = Scanner([f], workers=2, reader=reader).scan([root])
    assert report.verdict == "incomplete"
    assert [(p.path.rsplit(b"/", 1)[1], p.code) for p in report.errors] == [(b"bad-sector.jpg", "EIO")]


def test_a_file_that_vanishes_before_it_is_opened(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    _, f = known
    root = tmp_path / "device"
    write_random(root / "gone.jpg", 100, 1)

    def opener(dir_fd: int, name: bytes) -> tuple[int, int]:
        os.unlink(name, dir_fd=dir_fd)
        return open_regular(dir_fd, name)

    report = Scanner([f], workers=1, opener=opener).scan([root])
    assert report.verdict == "incomplete" and report.errors[0].code == "ENOENT"


@pytest.mark.parametrize("size", [5_000, 3_000_000])
def test_a_file_that_changes_size_while_read(
    tmp_path: Path, known: tuple[Path, ContrabandFilter], size: int
) -> None:
    _, f = known
    root = tmp_path / "device"
    target = write_random(root / "growing.mp4", size, 1)

    def reader(fd: int, size: int, kinds: Sequence[str], cancel: threading.Event | None) -> DigestResult:
        with target.open("ab") as grow:
            grow.write(b"x" * 10)
        return read_digests(fd, size, kinds, cancel)

    for mode in ("auto", "full"):
        report = Scanner([f], mode=mode, workers=1, reader=reader).scan([root])  # type: ignore[arg-type]
        assert report.verdict == "incomplete", mode
        assert [p.code for p in report.errors] == ["changed"], mode


def test_a_folder_of_100000_entries(tmp_path: Path, known: tuple[Path, ContrabandFilter]) -> None:
    path, f = known
    root = tmp_path / "device"
    root.mkdir()
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(100_000):
            os.close(os.open(f"e{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dir_fd))
    finally:
        os.close(dir_fd)
    (root / "z-known.jpg").write_bytes(path.read_bytes())
    report = Scanner([f], workers=2).scan([root])
    assert report.verdict == "priority_match"
    assert report.counts.files_seen == 100_001 and report.counts.files_empty == 100_000


def test_nesting_1000_deep_beyond_path_max(tmp_path: Path, known: tuple[Path, ContrabandFilter]) -> None:
    path, f = known
    root = tmp_path / "device"
    root.mkdir()
    name = b"n" * 60
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1000):
        os.mkdir(name, dir_fd=fd)
        deeper = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    out = os.open(b"deep.jpg", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
    os.write(out, path.read_bytes())
    os.close(out)
    os.close(fd)
    try:
        report = Scanner([f], workers=2).scan([root])
        assert report.verdict == "priority_match" and report.counts.directories == 1001
        (hit,) = report.hits
        assert hit.path == os.fsencode(root) + (b"/" + name) * 1000 + b"/deep.jpg"
        assert len(hit.path) > 4096
    finally:
        remove_chain(root, name, 1000)


def remove_chain(root: Path, name: bytes, depth: int) -> None:
    """Remove the deep chain without recursion: shutil.rmtree (and pytest's cleanup of old temp
    folders) overflows Python's stack on it."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    for _ in range(depth):
        fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    os.unlink(b"deep.jpg", dir_fd=fds[-1])
    os.close(fds.pop())
    while fds:
        os.rmdir(name, dir_fd=fds[-1])
        os.close(fds.pop())


@pytest.mark.root
def test_a_bind_mount_loop_is_walked_once(tmp_path: Path, known: tuple[Path, ContrabandFilter]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to bind-mount")
    path, f = known
    root = tmp_path / "device"
    loop = root / "a" / "b" / "loop"
    loop.mkdir(parents=True)
    (root / "a" / "known.jpg").write_bytes(path.read_bytes())
    mounted = subprocess.run(["mount", "--bind", str(root / "a"), str(loop)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.strip()}")
    try:
        report = scan_with_timeout(Scanner([f], workers=2), [root])
    finally:
        subprocess.run(["umount", "-l", str(loop)], check=True)
    assert report.verdict == "priority_match" and len(report.hits) == 1
    assert [(p.path, p.code) for p in report.skipped] == [(os.fsencode(loop), "loop")]


def test_hostile_names_are_reported_escaped_and_recoverable(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    path, f = known
    root = os.fsencode(tmp_path / "device")
    folder = root + b"/DCIM/\xff\xfe bad\x1b]0;owned\x07"
    os.makedirs(folder)
    evil = folder + b"/line\nbreak\x1b[2J\x9b.jpg"
    with open(evil, "wb") as out:
        out.write(path.read_bytes())
    os.mkfifo(folder + b"/\r\x1b[31mfifo")
    report = Scanner([f], workers=2).scan([root])
    assert report.verdict == "priority_match"
    document = json.loads(json.dumps(report.to_json()))
    for entry in [*document["hits"], *document["skipped"]]:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in entry["path"]), entry["path"]
    assert path_from_b64(document["hits"][0]["path_b64"]) == evil
    assert path_from_b64(document["skipped"][0]["path_b64"]) == folder + b"/\r\x1b[31mfifo"
    assert "\\n" in document["hits"][0]["path"] and "\\xff" in document["hits"][0]["path"]


def test_cancel_gives_incomplete(tmp_path: Path, known: tuple[Path, ContrabandFilter]) -> None:
    _, f = known
    root = tmp_path / "device"
    for i in range(50):
        write_random(root / f"f{i}.jpg", 1000, i)
    cancel = threading.Event()

    def reader(fd: int, size: int, kinds: Sequence[str], event: threading.Event | None) -> DigestResult:
        cancel.set()
        return read_digests(fd, size, kinds, event)

    report = Scanner([f], workers=1, cancel=cancel, reader=reader).scan([root])
    assert report.verdict == "incomplete" and report.cancelled and not report.complete
    assert report.counts.files_read < 50


def test_bidi_and_invisible_characters_are_escaped(
    tmp_path: Path, known: tuple[Path, ContrabandFilter]
) -> None:
    """U+202E makes ``photo\\u202egpj.exe`` display as ``photoexe.jpg``: the report shows the codes."""
    path, f = known
    root = tmp_path / "device"
    root.mkdir()
    spoofed = "photo\u202egpj.exe"
    (root / spoofed).write_bytes(path.read_bytes())
    (root / "zero\u200bwidth\u2066isolate\u2028line\ufeff.jpg").write_bytes(b"x" * 100)
    report = Scanner([f], workers=1).scan([os.fsencode(root)])
    document = json.loads(json.dumps(report.to_json()))
    [hit] = document["hits"]
    assert hit["path"].endswith("/photo\\u202egpj.exe")
    assert path_from_b64(hit["path_b64"]) == os.fsencode(root / spoofed)
    summary = io.StringIO()
    print_summary(report, summary)
    for text in (json.dumps(document, ensure_ascii=False), summary.getvalue()):
        assert "\\u202e" in text
        assert not any(ch in text for ch in "\u202e\u200b\u2066\u2028\ufeff")
