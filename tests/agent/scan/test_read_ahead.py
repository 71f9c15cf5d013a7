"""The read-ahead thread: blocks in order, errors in the caller, always finished before reuse."""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import closing
from pathlib import Path

import pytest

from agent.scan import read_ahead
from agent.scan.read_ahead import BLOCK, borrowed
from agent.scan.reader import ReadCancelled, read_digests

from .conftest import write_random


def test_blocks_are_the_file_in_order(tmp_path: Path) -> None:
    path = write_random(tmp_path / "f", 3 * BLOCK + 12345, 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        with borrowed() as ahead, closing(ahead.blocks(fd, 3 * BLOCK + 12345)) as blocks:
            content = b"".join(bytes(block) for block in blocks)
    finally:
        os.close(fd)
    assert content == path.read_bytes()


def test_a_read_error_is_raised_in_the_caller(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # read() on a directory: EISDIR
    try:
        with pytest.raises(IsADirectoryError), borrowed() as ahead, closing(ahead.blocks(fd, 10)) as blocks:
            list(blocks)
    finally:
        os.close(fd)


def test_an_abandoned_file_stops_the_reader_before_the_next_one(tmp_path: Path) -> None:
    big = write_random(tmp_path / "big", 8 * BLOCK, 2)
    small = write_random(tmp_path / "small", 2 * BLOCK + 1, 3)
    cancel = threading.Event()
    cancel.set()
    fd = os.open(big, os.O_RDONLY)
    try:
        with pytest.raises(ReadCancelled):
            read_digests(fd, 8 * BLOCK, ("md5",), cancel)
    finally:
        os.close(fd)
    assert read_ahead._idle, "the reader went back to the pool"
    fd = os.open(small, os.O_RDONLY)
    try:  # the same reader: nothing of the abandoned file may leak into this one
        got = read_digests(fd, 2 * BLOCK + 1, ("md5",)).digests["md5"]
    finally:
        os.close(fd)
    assert got == hashlib.md5(small.read_bytes()).digest()


def test_several_threads_stream_at_once(tmp_path: Path) -> None:
    files = [write_random(tmp_path / f"f{i}", BLOCK * (2 + i) + i, 10 + i) for i in range(4)]
    results: dict[Path, bytes] = {}

    def stream(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            results[path] = read_digests(fd, path.stat().st_size, ("sha256",)).digests["sha256"]
        finally:
            os.close(fd)

    threads = [threading.Thread(target=stream, args=(p,)) for p in files for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert {p: hashlib.sha256(p.read_bytes()).digest() for p in files} == results
