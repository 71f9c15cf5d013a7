"""Helpers for scan tests: synthetic files (random bytes) and signed filters built from them."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.scan import Scanner, ScanReport, worker_state
from agent.scan import engine as engine_module
from agent.scan.reader_processes import ReaderPool, close_idle
from filters.builder import FilterBuilder
from filters.container import load_filter, write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key
from filters.model import ContrabandFilter


def write_random(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


class FilterFactory:
    """Builds, signs, writes and loads filters whose entries are digests of given files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key_path, self.pub_path = generate_key_pair(folder / "lab")
        self.trust = TrustStore.from_paths([self.pub_path])
        self.count = 0

    def path(
        self,
        files: Iterable[Path],
        kinds: Sequence[str] = ("sample", "blake3"),
        *,
        category: str = "known",
        priority: str = "priority",
        from_content: bool = True,
        extra: Iterable[DigestEntry] = (),
        name: str = "test",
    ) -> Path:
        builder = FilterBuilder(name=name)
        for file in files:
            for kind, digest in digest_path(file, kinds).items():
                builder.add(DigestEntry(kind, digest, category, priority, from_content))  # type: ignore[arg-type]
        for entry in extra:
            builder.add(entry)
        self.count += 1
        target = self.folder / f"{name}-{self.count}.ftf"
        write_filter(target, builder.build_unsigned(), load_private_key(self.key_path))
        return target

    def make(
        self, files: Iterable[Path], kinds: Sequence[str] = ("sample", "blake3"), **kw: object
    ) -> ContrabandFilter:
        return load_filter(self.path(files, kinds, **kw), self.trust)  # type: ignore[arg-type]


@pytest.fixture
def filters(tmp_path: Path) -> FilterFactory:
    return FilterFactory(tmp_path / "filters")


@pytest.fixture
def known_tree(tmp_path: Path) -> Callable[..., tuple[Path, list[Path]]]:
    """A small phone-like tree; returns (root, the files to put in a filter)."""

    def make(clean: int = 30, seed: int = 1) -> tuple[Path, list[Path]]:
        root = tmp_path / "device"
        known = [
            write_random(root / "DCIM" / "Camera" / "IMG_0001.jpg", 70_000, seed),
            write_random(root / "Download" / "clip.mp4", 1_500_000, seed + 1),
        ]
        for i in range(clean):
            write_random(
                root / "Android" / "data" / f"app{i % 3}" / f"f{i}.bin", 10 + i * 997, seed + 100 + i
            )
        write_random(root / "Movies" / "holiday.mp4", 4_000_000, seed + 2)  # clean and large
        (root / "empty.txt").write_bytes(b"")
        return root, known

    return make


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def tree_size(root: Path) -> int:
    return sum(os.lstat(p).st_size for p in all_files(root))


TIMEOUT = 30.0


def warm(processes: int) -> None:
    """Start ``processes`` reader processes and leave them idle: the next scan uses them at once."""
    pool = ReaderPool(processes)
    try:
        assert pool.ready(TIMEOUT) == processes
    finally:
        pool.close()


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of files of each batch a process read (counted by the engine)."""
    counts: list[int] = []
    real = worker_state.account

    def account(*args: Any) -> int:
        counts.append(len(args[3]))
        return int(real(*args))

    monkeypatch.setattr(engine_module, "account", account)
    yield counts
    close_idle()


def scan(f: ContrabandFilter, root: Path, workers: int, **kw: Any) -> ScanReport:
    """A scan in another thread (the forkserver is used from a thread), never waited for forever."""
    result: list[ScanReport] = []
    thread = threading.Thread(
        target=lambda: result.append(Scanner([f], mode="full", workers=workers, **kw).scan([root]))
    )
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "scan hung"
    return result[0]
