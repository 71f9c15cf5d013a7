"""Reader processes: the same reports as the threads and the inline path (hostile entries included),
each file read once with the same checks; a killed process or one that cannot start: its files are
read by the scanning thread (never a hang, never lost); cancel; ^C; mapped reading."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.scan import engine as engine_module
from agent.scan import reader_processes as reader_processes_module
from agent.scan import worker_state
from agent.scan.reader import read_digests
from agent.scan.reader_processes import ReaderPool, _SharedFlag, close_idle, mapped_digests, read_folder
from agent.scan.worker_state import EMPTY, ERROR, NOT_SCANNED, OK, SKIPPED, Outcome

from .conftest import TIMEOUT, FilterFactory, scan, warm, write_random


def hostile_tree(root: Path, outside: Path) -> list[Path]:
    files = [write_random(root / f"d{i % 4}" / "sub" / f"{i:03d}.dat", 1 + i * 101, i) for i in range(90)]
    files.append(write_random(root / "DCIM" / "IMG_0001.JPG", 1_200_000, 7))  # streamed (> 1 MiB)
    (root / "d0" / "empty").write_bytes(b"")
    os.mkfifo(root / "d1" / "fifo")
    (root / "d2" / "link.jpg").symlink_to(files[0])
    (root / "d2" / "outside").symlink_to(outside)
    unreadable = write_random(root / "d3" / "unreadable", 100, 5)
    unreadable.chmod(0)  # (readable anyway as root)
    for name in (b"new\nline", b"esc\x1b[31m", b"bad\xff\xfeutf8"):
        with open(os.path.join(os.fsencode(root / "d3"), name), "wb") as out:
            out.write(name * 50)
    return files


def test_reports_are_identical_for_1_2_and_3_workers(
    tmp_path: Path, filters: FilterFactory, applied: list[int]
) -> None:
    root = tmp_path / "device"
    outside = write_random(tmp_path / "outside" / "known.jpg", 3000, 1)
    files = hostile_tree(root, outside)
    f = filters.make([files[3], files[-1], outside], ("md5", "blake3"))
    documents = []
    for workers in (1, 2, 3):
        if workers > 1:
            warm(workers - 1)
        applied.clear()
        report = scan(f, root, workers)
        assert report.counts.files_seen == 91 + 1 + 1 + 3
        assert bool(applied) == (workers > 1)  # processes read (all or some) files
        documents.append(report.to_json(timings=False))
    assert documents[0] == documents[1] == documents[2]
    report = scan(f, root, 3)
    assert [h.path for h in report.hits] == sorted(os.fsencode(p) for p in (files[3], files[-1]))
    skipped = {os.path.basename(p.path): p.code for p in report.skipped}
    assert skipped == {b"fifo": "fifo", b"link.jpg": "symlink", b"outside": "symlink"}
    if os.geteuid() != 0:
        assert [(os.path.basename(p.path), p.code) for p in report.errors] == [(b"unreadable", "EACCES")]
        assert report.verdict == "priority_match" and not report.complete
    else:
        assert report.complete and not report.errors and report.counts.files_read == 95


def test_read_folder_outcomes_and_folder_checks(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    write_random(folder / "a", 10, 1)
    (folder / "empty").write_bytes(b"")
    os.mkfifo(folder / "fifo")
    (folder / "link").symlink_to(folder / "a")
    (folder / "dir").mkdir()
    names = [b"a", b"empty", b"fifo", b"link", b"dir", b"gone"]
    info = os.stat(folder)
    ident = (info.st_dev, info.st_ino)
    raw = multiprocessing.get_context("forkserver").RawValue("b", 0)
    cancel = _SharedFlag(raw)
    path = os.fsencode(folder)
    outcomes = read_folder(path, ident, names, ("md5",), cancel)
    assert outcomes is not None
    tags = [(o[0], o[1]) if o[0] in (SKIPPED, ERROR) else o[0] for o in outcomes]
    assert tags == [OK, EMPTY, (SKIPPED, "changed_type"), (SKIPPED, "symlink"), (SKIPPED, "changed_type"),
                    (ERROR, "ENOENT")]  # fmt: skip
    assert outcomes is not None
    assert outcomes[0][1] == 10 and outcomes[0][3] == 10 and set(outcomes[0][2]) == {"md5"}
    # a path that does not lead to the folder listed: None, the scanning thread reads the batch
    assert read_folder(path, (ident[0], ident[1] + 1), names, ("md5",), cancel) is None
    assert read_folder(path + b"/a", ident, names, ("md5",), cancel) is None
    assert read_folder(path + b"/no", ident, names, ("md5",), cancel) is None
    raw.value = 1
    assert read_folder(path, ident, names, ("md5",), cancel) == [(NOT_SCANNED, 0)] * 6


def test_the_batches_of_a_killed_reader_process_are_read_by_the_scanning_thread(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch, applied: list[int]
) -> None:
    root = tmp_path / "device"
    files = [write_random(root / f"d{i % 3}" / f"{i:03d}.dat", 100 + i, i) for i in range(60)]
    contraband = filters.make(files[::7], ("md5",))
    alone = scan(contraband, root, 1)
    warm(1)
    killed: list[int] = []
    real_send = ReaderPool.send

    def send_then_kill(self: ReaderPool, *args: Any) -> int | None:
        pids = [r.process.pid for r in self._ready]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # cannot answer before it dies
        token = real_send(self, *args)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return token

    monkeypatch.setattr(ReaderPool, "send", send_then_kill)
    report = scan(contraband, root, 2)
    assert killed and applied == [], "every batch sent was lost with its process"
    assert report.verdict == "priority_match" and report.complete
    assert report.to_json(timings=False) == alone.to_json(timings=False)
    assert not multiprocessing.active_children()


def test_cancel_stops_the_processes(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch, applied: list[int]
) -> None:
    root = tmp_path / "device"
    files = [write_random(root / f"d{i % 20}" / f"{i:04d}.dat", 100, i) for i in range(2000)]
    cancel = threading.Event()
    real = getattr(engine_module, "account")  # noqa: B009 (the counting one of ``applied``)

    def account_then_cancel(*args: Any) -> int:
        cancel.set()
        return int(real(*args))

    monkeypatch.setattr(engine_module, "account", account_then_cancel)
    warm(2)
    report = scan(filters.make(files[:1], ("md5",)), root, 3, cancel=cancel)
    assert report.cancelled and report.verdict in ("incomplete", "priority_match") and not report.complete
    counts = report.counts
    assert counts.files_read < 2000 and not report.errors
    # (whether batches were still in flight when cancel came depends on timing: not asserted)
    assert counts.files_read + counts.files_not_scanned <= counts.files_seen


def test_processes_are_reused_then_closed(tmp_path: Path, filters: FilterFactory) -> None:
    close_idle()
    warm(2)
    assert len(multiprocessing.active_children()) == 2
    root = tmp_path / "device"
    files = [write_random(root / f"{i:03d}.dat", 100, i) for i in range(50)]
    report = scan(filters.make(files[:1], ("md5",)), root, 3)
    assert report.complete and len(multiprocessing.active_children()) == 2
    close_idle()
    assert not multiprocessing.active_children()


THREAD_SCRIPT = """
import sys, threading
from agent.scan import Scanner
from agent.scan.reader_processes import ReaderPool, close_idle
from filters.container import load_filter
from filters.keys import TrustStore

def scan():
    pool = ReaderPool(1)  # the forkserver of this program starts here, in a thread
    assert pool.ready(30.0) == 1
    pool.close()
    f = load_filter(sys.argv[1], TrustStore.from_paths([sys.argv[2]]))
    report = Scanner([f], mode="full", workers=2).scan([sys.argv[3]])
    print(report.verdict, report.counts.files_read, flush=True)
    close_idle()

if __name__ == "__main__":
    thread = threading.Thread(target=scan)
    thread.start()
    thread.join()
"""


def test_the_forkserver_starts_from_a_thread(tmp_path: Path, filters: FilterFactory) -> None:
    """A fresh program whose first scan runs in a thread (as the daemon's bay workers do)."""
    root = tmp_path / "device"
    files = [write_random(root / f"{i:03d}.dat", 100 + i, i) for i in range(40)]
    script = tmp_path / "scan_in_thread.py"
    script.write_text(THREAD_SCRIPT)
    ftf = filters.path(files[:1], ("md5",))
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, str(script), str(ftf), str(filters.pub_path), str(root)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["priority_match", "40"]


def test_reader_processes_false_keeps_threads(
    tmp_path: Path, filters: FilterFactory, reader_pools: list[ReaderPool]
) -> None:
    """The daemon's default (no ``scan.workers``): several workers stay threads, same report."""
    files = [write_random(tmp_path / "tree" / f"{i}.dat", 500 + i, i) for i in range(40)]
    f = filters.make(files[:1], ("md5",))
    threads = scan(f, tmp_path / "tree", 3, reader_processes=False)
    assert reader_pools == []
    processes = scan(f, tmp_path / "tree", 3)
    assert [pool.count for pool in reader_pools] == [2]
    assert threads.to_json(timings=False) == processes.to_json(timings=False)
    assert threads.verdict == "priority_match"


def test_an_interrupt_while_answers_are_applied_ends_the_scan(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """^C lands while the scanning thread applies one of several answers: the others are applied
    (or their batches read) while the scan winds down; it ends, cancelled, never hangs."""
    files = [write_random(tmp_path / "dev" / f"d{i % 10}" / f"{i:04d}.dat", 100, i) for i in range(3000)]
    real_collect, real_account, real_scan_batch = (
        ReaderPool.collect,
        worker_state.account,
        engine_module._Run.scan_batch,
    )
    armed: list[bool] = []

    def collect(self: ReaderPool, timeout: float) -> list[tuple[int, list[Outcome] | None]]:
        answers = real_collect(self, timeout)
        if len(answers) >= 2 and not armed:
            armed.append(True)
        return answers

    def account(*args: Any) -> int:
        if armed and armed[-1]:
            armed.append(False)
            raise KeyboardInterrupt
        return int(real_account(*args))

    def slow_scan_batch(self: Any, *args: Any) -> None:
        time.sleep(0.02)  # answers pile up while the scanning thread reads
        real_scan_batch(self, *args)

    monkeypatch.setattr(ReaderPool, "collect", collect)
    monkeypatch.setattr(engine_module, "account", account)
    monkeypatch.setattr(engine_module._Run, "scan_batch", slow_scan_batch)
    warm(2)
    report = scan(filters.make(files[:1], ("md5",)), tmp_path / "dev", 3)
    close_idle()
    assert armed == [True, False], "the interrupt was raised while answers were waiting"
    assert report.cancelled and not report.complete


@pytest.mark.parametrize(
    "size", [100, (1 << 20) + 1, (16 << 20) - 1, 16 << 20, (16 << 20) + 4097, (33 << 20) + 5]
)
def test_mapped_digests_equal_read_digests(tmp_path: Path, size: int) -> None:
    """Mapped in 16 MiB windows (sample blocks cut from the window holding them), or read when small."""
    path = write_random(tmp_path / "f", size, size)
    flag = _SharedFlag(multiprocessing.get_context("forkserver").RawValue("b", 0))
    kinds = ("md5", "blake3", "sample")
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mapped_digests(fd, size, kinds, flag)
        os.lseek(fd, 0, os.SEEK_SET)
        read = read_digests(fd, size, kinds)
    finally:
        os.close(fd)
    assert mapped == (read.digests, size)


@pytest.mark.parametrize("failing", ["Pipe", "RawValue", "Process"])
def test_no_process_can_start_then_the_scanning_thread_reads_everything(
    tmp_path: Path, filters: FilterFactory, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """No descriptors left (a deep tree), no shared memory, no fork: a scan, not a traceback."""
    close_idle()
    files = [write_random(tmp_path / "tree" / f"d{i % 4}" / f"{i}.dat", 300 + i, i) for i in range(40)]
    f = filters.make(files[:1], ("md5",))
    alone = scan(f, tmp_path / "tree", 1)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(multiprocessing.get_context("forkserver"), failing, refuse)
    running = threading.Event()
    running.set()  # the forkserver is up: processes are started by the scanning thread itself
    monkeypatch.setattr(reader_processes_module, "_server", running)
    report = scan(f, tmp_path / "tree", 3)
    assert report.to_json(timings=False) == alone.to_json(timings=False)
