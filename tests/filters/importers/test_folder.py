from __future__ import annotations

import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from filters.digests import FileChangedError, digest_fd
from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers import folder as folder_module
from filters.importers.folder import read_folder

from ..reference_digests import reference_digest
from .synthetic import bad_locations, read_all

ALL_KINDS = ("md5", "sha1", "sha256", "blake3", "sample")
SIZES = [1, 100, 12 * 1024, 12 * 1024 + 1, 48 * 1024 + 1, (1 << 20) + 3, 3 * (1 << 20) - 7]


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail instead of hanging forever if the reader blocks (for example opening a FIFO)."""

    def fail(signum: int, frame: object) -> None:
        raise TimeoutError("reader blocked")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_digests_equal_independent_hashlib_and_blake3(tmp_path: Path) -> None:
    contents = {f"f{size:08d}.bin": os.urandom(size) for size in SIZES}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    options = ImportOptions(category="seized", priority="other", digests=ALL_KINDS)

    entries, report = read_all(tmp_path, "folder", options)

    expected = [
        DigestEntry(kind, reference_digest(kind, contents[name]), "seized", "other", from_content=True)
        for name in sorted(contents)
        for kind in ALL_KINDS
    ]
    assert entries == expected
    assert report.bad_count == 0
    assert report.records[str(tmp_path)] == len(expected)


def test_walk_order_is_depth_first_sorted_by_bytes(tmp_path: Path) -> None:
    names = ["b/z", "b/a/x", "a", "B", "c/d/e/f", "b/m", "a_"]
    for index, name in enumerate(names):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"synthetic {index}".encode())
    entries, _ = read_all(tmp_path, "folder", ImportOptions(digests=("md5",)))
    order = ["B", "a", "a_", "b/a/x", "b/m", "b/z", "c/d/e/f"]
    assert [e.digest for e in entries] == [
        hashlib.md5((tmp_path / name).read_bytes()).digest() for name in order
    ]


def test_each_file_is_read_once_for_all_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(3):
        (tmp_path / f"f{index}").write_bytes(os.urandom(70_000))
    calls: list[tuple[str, ...]] = []
    real = digest_fd

    def spy(fd: int, size: int, kinds: tuple[str, ...]) -> dict[str, bytes]:
        calls.append(tuple(kinds))
        return real(fd, size, kinds)

    monkeypatch.setattr(folder_module, "digest_fd", spy)
    entries, _ = read_all(tmp_path, "folder", ImportOptions(digests=("blake3", "sample", "md5")))
    assert calls == [("md5", "blake3", "sample")] * 3
    assert len(entries) == 9


def test_zero_length_files_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "empty2").write_bytes(b"")
    (tmp_path / "one").write_bytes(b"\x00")
    entries, report = read_all(tmp_path, "folder")
    assert len(entries) == 2  # sample and blake3 of "one"
    assert report.left_out == {"zero-length file": 2}


def test_symlinks_fifos_and_sockets_are_not_followed(tmp_path: Path, no_hang: None) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(os.urandom(64))
    root = tmp_path / "input"
    root.mkdir()
    (root / "real").write_bytes(os.urandom(64))
    (root / "link-to-file").symlink_to(outside / "secret")
    (root / "link-to-dir").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(root / "fifo")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "sock"))
        entries, report = read_all(root, "folder", ImportOptions(digests=("md5",)))
    finally:
        server.close()
    assert [e.digest for e in entries] == [hashlib.md5((root / "real").read_bytes()).digest()]
    assert report.left_out == {"symbolic link": 3, "named pipe (FIFO)": 1, "socket": 1}
    assert report.bad_count == 0


def test_fifo_swapped_in_after_listing_does_not_block(tmp_path: Path, no_hang: None) -> None:
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second")
    report = ImportReport()
    entries = read_folder(tmp_path, ImportOptions(digests=("md5",)), report)
    first = next(entries)
    (tmp_path / "b").unlink()
    os.mkfifo(tmp_path / "b")
    assert first.digest == hashlib.md5(b"first").digest()
    assert list(entries) == []
    assert report.left_out == {"not a regular file": 1}


def test_input_directory_may_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_bytes(b"synthetic")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    entries, _ = read_all(tmp_path / "link", "folder", ImportOptions(digests=("sha1",)))
    assert [e.digest for e in entries] == [hashlib.sha1(b"synthetic").digest()]


def test_non_utf8_file_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.fsencode(tmp_path)
    os.mkdir(root + b"/d\xe9j\xe0")
    data = os.urandom(300)
    with open(root + b"/d\xe9j\xe0/\xff\xfe.bin", "wb") as handle:
        handle.write(data)
    entries, report = read_all(tmp_path, "folder", ImportOptions(digests=("sha256",)))
    assert [e.digest for e in entries] == [hashlib.sha256(data).digest()]

    def refuse(fd: int, size: int, kinds: tuple[str, ...]) -> dict[str, bytes]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folder_module, "digest_fd", refuse)
    _, report = read_all(tmp_path, "folder")
    assert [str(r) for r in report.bad_records] == [
        f"{tmp_path}: file d\\xe9j\\xe0/\\xff\\xfe.bin: Permission denied"
    ]


def test_vanished_and_changed_files_are_bad_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(os.urandom(10))
    real = digest_fd

    def changes_for_c(fd: int, size: int, kinds: tuple[str, ...]) -> dict[str, bytes]:
        if os.fstat(fd).st_ino == (tmp_path / "c").stat().st_ino:
            raise FileChangedError("file changed size while read (3 of 10 bytes)")
        return real(fd, size, kinds)

    monkeypatch.setattr(folder_module, "digest_fd", changes_for_c)
    report = ImportReport()
    entries = read_folder(tmp_path, ImportOptions(digests=("md5",)), report)
    next(entries)
    (tmp_path / "b").unlink()  # listed already, gone before it is opened
    assert list(entries) == []
    assert [str(r) for r in report.bad_records] == [
        f"{tmp_path}: file b: No such file or directory",
        f"{tmp_path}: file c: file changed size while read (3 of 10 bytes)",
    ]


def test_unlistable_directory_is_a_bad_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "f").write_bytes(b"x")
    (tmp_path / "z").write_bytes(b"y")
    real = folder_module._sorted_entries

    def refuse_locked(directory: str) -> list[os.DirEntry[str]]:
        if directory.endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(directory)

    monkeypatch.setattr(folder_module, "_sorted_entries", refuse_locked)
    entries, report = read_all(tmp_path, "folder", ImportOptions(digests=("md5",)))
    assert [e.digest for e in entries] == [hashlib.md5(b"y").digest()]
    assert bad_locations(report) == ["directory locked"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_really_unreadable(tmp_path: Path) -> None:
    (tmp_path / "closed").write_bytes(b"x")
    (tmp_path / "closed").chmod(0)
    _, report = read_all(tmp_path, "folder")
    assert [str(r) for r in report.bad_records] == [f"{tmp_path}: file closed: Permission denied"]


def test_strict_stops_at_first_bad_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_bytes(b"x")

    def broken(fd: int, size: int, kinds: tuple[str, ...]) -> dict[str, bytes]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder_module, "digest_fd", broken)
    with pytest.raises(ImportFailed) as raised:
        read_all(tmp_path, "folder", ImportOptions(strict=True))
    assert str(raised.value) == f"{tmp_path}: file sub/f: Input/output error"


def test_unknown_digest_kind_and_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="unknown digest kind 'crc32'"):
        read_all(tmp_path, "folder", ImportOptions(digests=("crc32",)))
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ImportFailed) as raised:
        read_all(tmp_path / "file", "folder")
    assert str(raised.value) == f"{tmp_path / 'file'}: Not a directory"


def test_a_folder_holding_no_file_is_named(tmp_path: Path) -> None:
    """An empty folder (or one of only subfolders and links) stops the build naming the folder and
    saying it holds no file; before, "<filter name>: no digests to build a filter from"."""
    empty = tmp_path / "known"
    empty.mkdir()
    with pytest.raises(ImportFailed) as raised:
        read_all(empty, "folder")
    assert (
        str(raised.value) == f"{empty}: holds no file (the folder is empty): nothing to build a filter from"
    )
    (empty / "sub" / "deeper").mkdir(parents=True)
    (empty / "link").symlink_to(tmp_path)
    with pytest.raises(ImportFailed) as raised:
        read_all(empty, "folder")
    assert str(raised.value) == (
        f"{empty}: holds no file (only subfolders, links or special files): nothing to build a filter from"
    )
    (empty / "sub" / "deeper" / "empty.bin").write_bytes(b"")
    entries, report = read_all(empty, "folder")  # a file, if empty: left out, as before
    assert entries == [] and report.left_out["zero-length file"] == 1
