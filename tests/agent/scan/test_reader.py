"""reader: digests equal the coreutils, b3sum and filters.digests; safe opening."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from agent.scan.reader import NotRegularFile, open_regular, read_digests
from filters.digests import DIGEST_KINDS, SAMPLE_WHOLE_LIMIT, FileChangedError, digest_path

from .conftest import write_random

SIZES = [
    1,
    100,
    4095,
    12287,
    12288,
    12289,
    16383,
    49153,
    70_000,
    (1 << 20) - 1,
    1 << 20,
    (1 << 20) + 1,
    3_333_333,
]
TOOLS = {"md5": "md5sum", "sha1": "sha1sum", "sha256": "sha256sum", "blake3": "b3sum"}


def digests_of(path: Path, kinds: tuple[str, ...]) -> dict[str, bytes]:
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd, size = open_regular(dir_fd, os.fsencode(path.name))
        try:
            return read_digests(fd, size, kinds).digests
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sizes")
    return [write_random(folder / f"f{size}", size, size) for size in SIZES]


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_whole_file_digests_equal_the_command_line_tools(generated: list[Path], kind: str) -> None:
    tool = shutil.which(TOOLS[kind])
    if tool is None:
        pytest.skip(f"{TOOLS[kind]} is not installed (apt-get install b3sum / coreutils)")
    lines = subprocess.run([tool, *map(str, generated)], capture_output=True, check=True, text=True).stdout
    expected = {line.split()[1]: line.split()[0] for line in lines.splitlines()}
    for path in generated:
        assert digests_of(path, (kind,))[kind].hex() == expected[str(path)], path


def test_all_kinds_at_once_equal_filters_digest_path(generated: list[Path]) -> None:
    for path in generated:
        together = digests_of(path, DIGEST_KINDS)
        assert together == digest_path(path, DIGEST_KINDS), path
        assert digests_of(path, ("sample",)) == digest_path(path, ("sample",)), path


def test_sample_only_reads_at_most_12_kib(generated: list[Path]) -> None:
    for path in generated:
        fd = os.open(path, os.O_RDONLY)
        try:
            result = read_digests(fd, path.stat().st_size, ("sample",))
        finally:
            os.close(fd)
        assert result.bytes_read <= SAMPLE_WHOLE_LIMIT == 12 * 1024


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            open_regular(dir_fd, b"pipe")
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    os.close(dir_fd)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert isinstance(outcome[0], NotRegularFile)


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    write_random(tmp_path / "target", 10, 1)
    (tmp_path / "link").symlink_to(tmp_path / "target")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="symbolic links|Too many levels"):
            open_regular(dir_fd, b"link")
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize("size", [1000, 3_000_000])
@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_a_file_that_changes_size_while_read_raises(tmp_path: Path, size: int, change: str) -> None:
    path = write_random(tmp_path / "f", size, 2)
    fd = os.open(path, os.O_RDONLY)
    try:
        if change == "grow":
            with path.open("ab") as f:
                f.write(b"more")
        else:
            os.truncate(path, size // 2)
        with pytest.raises(FileChangedError):
            read_digests(fd, size, ("md5",))
    finally:
        os.close(fd)


def test_cancel_stops_streaming_a_large_file(tmp_path: Path) -> None:
    from agent.scan.reader import ReadCancelled

    path = write_random(tmp_path / "big", 3_000_000, 3)
    cancel = threading.Event()
    cancel.set()
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ReadCancelled):
            read_digests(fd, 3_000_000, ("blake3",), cancel)
    finally:
        os.close(fd)
