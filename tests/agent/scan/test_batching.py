"""Batched lookups: hits among many files are found in every mode, whatever the worker count, and
no descriptor is left open (those kept open for a confirmation included)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.scan import Scanner
from agent.scan.reader_processes import close_idle

from .conftest import FilterFactory, write_random


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("mode", ["auto", "full", "quick"])
def test_hits_among_many_small_files(tmp_path: Path, filters: FilterFactory, mode: str, workers: int) -> None:
    root = tmp_path / "device"
    files = [write_random(root / "app" / f"{i:04d}.dat", 100 + i, i) for i in range(600)]
    files.append(write_random(root / "app" / "big.mp4", 1_500_000, 9999))
    known = [files[0], files[299], files[599], files[-1]]
    f = filters.make(known, ("sample", "blake3"))
    Scanner([f], mode=mode, workers=workers).scan([root])  # type: ignore[arg-type]
    close_idle()  # reader processes wait for the next scan; the forkserver stays (not counted)
    before = _open_fds()
    report = Scanner([f], mode=mode, workers=workers).scan([root])  # type: ignore[arg-type]
    close_idle()
    assert _open_fds() == before
    assert report.verdict == "priority_match"
    assert [h.path for h in report.hits] == sorted(os.fsencode(p) for p in known)
    assert report.counts.files_read == len(files) and not report.errors
    confirmed = {h.path: h.confirmed for h in report.hits}
    assert set(confirmed.values()) == ({None} if mode == "quick" else {True})
    if mode == "auto":
        assert report.counts.files_confirmed == len(known)  # each hit read again for its blake3
