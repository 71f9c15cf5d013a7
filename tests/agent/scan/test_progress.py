"""The progress line on a fake terminal (a rich Console of a given width, forced to be a terminal):
it fits the width and is redrawn in place (no refresh scrolls a line), shows a percentage (``about``
while the walk goes on) and an ETA, the hits so far with priority ones highlighted, and prints
nothing at all on a file or pipe."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from agent.scan import Scanner
from agent.scan.events import ScanFinished, ScanHit, ScanProgress, ScanStarted
from agent.scan.progress import PRIORITY_STYLE, ProgressBar, ProgressLine
from agent.scan.reader import DigestResult, read_digests
from agent.scan.report import Hit, MatchEvidence

from .conftest import FilterFactory, write_random

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDTH = 80


def terminal(width: int = WIDTH) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system="standard")


def written(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def screen_lines(output: str) -> list[str]:
    """What each redraw leaves on a line: escape sequences removed, split at CR and LF."""
    return [piece for piece in re.split(r"[\r\n]", CSI.sub("", output)) if piece]


def progress(**changes: object) -> ScanProgress:
    values: dict[str, object] = {
        "elapsed_s": 10.0,
        "files_found": 1430,
        "bytes_found": 10**9,
        "bytes_to_read": 3 * 10**9,
        "walk_done": True,
        "files_done": 1208,
        "bytes_read": 10**9,
        "hits": 3,
        "priority_hits": 1,
        "errors": 2,
        "bytes_per_s": 12.3e6,
        "files_per_s": 120.8,
    }
    values.update(changes)
    return ScanProgress(**values)  # type: ignore[arg-type]


def hit(path: bytes, priority: str) -> Hit:
    evidence = MatchEvidence("f1", "test", 0, "md5", "known", priority, b"\0" * 16)
    return Hit(path, 1000, (evidence,), {"md5": b"\0" * 16})


STARTED = ScanStarted((b"/mnt/evidence",), "auto", 1, ("f1",), ("sample",))

# every size of number the line shows, from a first refresh to a huge device
SAMPLES = [
    progress(walk_done=False, files_found=0, files_done=0, bytes_to_read=0, bytes_read=0, hits=0,
             priority_hits=0, errors=0, bytes_per_s=0.0),
    progress(walk_done=False),
    progress(),
    progress(files_found=12_345_678, files_done=9_876_543, bytes_read=int(1.2e12), bytes_to_read=int(9e12),
             hits=123_456, priority_hits=65_432, errors=1_234_567, bytes_per_s=1.2e9, elapsed_s=99_999.0),
    progress(bytes_per_s=1.0, bytes_to_read=10**15),  # an ETA of years
    progress(files_done=1430, bytes_read=3 * 10**9),
]  # fmt: skip


@pytest.mark.parametrize("width", [WIDTH, 120, 60, 40, 20])
def test_no_refresh_is_wider_than_the_terminal_or_scrolls(width: int) -> None:
    console = terminal(width)
    bar = ProgressBar(io.StringIO(), console=console)
    bar(STARTED)
    for sample in SAMPLES * 3:
        bar(sample)
    output = written(console)
    assert "\n" not in output, "a refresh scrolled a new line"
    assert output.count("\r") >= len(SAMPLES) * 3 - 1, "each refresh redraws in place"
    assert "\x1b[2K" in output  # the line is erased before it is drawn again
    lines = screen_lines(output)
    assert lines and all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    bar(ScanFinished(None))  # type: ignore[arg-type]
    assert bar.live is None and "\x1b[?25h" in written(console)  # the cursor is shown again


def test_percentage_and_eta_at_80_columns() -> None:
    console = terminal()
    line = ProgressLine(progress(errors=0))
    console.print(line)
    text = CSI.sub("", written(console))
    assert "33%" in text and "about" not in text
    assert "ETA 2:43" in text  # 2e9 bytes left at 12.3 MB/s
    assert "1,208/1,430 files" in text and "3 hits, 1 PRIORITY" in text
    assert cell_len(text.rstrip("\n")) <= WIDTH


def test_totals_before_the_walk_ends_are_said_to_be_estimates() -> None:
    console = terminal()
    console.print(ProgressLine(progress(walk_done=False, files_estimated=3620)))
    text = CSI.sub("", written(console))
    assert "about 33%" in text and "1,208/~3,620 files" in text  # files done over the estimate
    assert "ETA 0:20" in text  # (10 s for a third: 20 s for the rest)
    console = terminal()  # more found than estimated: the files found are the total so far
    console.print(ProgressLine(progress(walk_done=False, files_estimated=1000)))
    text = CSI.sub("", written(console))
    assert "about 84%" in text and "1,208/1,430+ files" in text
    for unknown in (SAMPLES[0], progress(walk_done=False)):  # no estimate: nothing is said
        console = terminal()
        console.print(ProgressLine(unknown))
        assert "walking" in CSI.sub("", written(console)) and "ETA --" in written(console)


def test_the_percentage_never_goes_back() -> None:
    """An estimate that proves low (more files found than it said) does not turn the line back."""
    console = terminal()
    bar = ProgressBar(io.StringIO(), console=console)
    bar(STARTED)
    bar(progress(walk_done=False, files_done=600, files_found=700, files_estimated=1000))
    assert bar.fraction == 0.6
    bar(progress(walk_done=False, files_done=700, files_found=2000, files_estimated=1000))
    assert bar.fraction == 0.6  # 700/2000 = 35 %: still 60 % shown
    assert "about 60%" in CSI.sub("", written(console)).rsplit("\r", 1)[-1]
    bar(STARTED)  # the next scan starts from nothing
    assert bar.fraction is None


def test_priority_hits_are_highlighted_and_hits_printed_above() -> None:
    console = terminal()
    segments = list(console.render(ProgressLine(progress()), console.options))
    [priority] = [s for s in segments if "PRIORITY" in s.text]
    assert priority.style is not None and priority.style == console.get_style(PRIORITY_STYLE)
    bar = ProgressBar(io.StringIO(), console=console)
    bar(STARTED)
    bar(progress())
    long_name = b"/mnt/evidence/" + b"very long folder name/" * 8 + b"\x1b[2Jphoto.jpg"
    bar(ScanHit(hit(long_name, "priority"), 1.0))
    bar(ScanHit(hit(b"/mnt/evidence/other.jpg", "other"), 1.0))
    bar(progress())
    output = written(console)
    assert "\x1b[2J" not in output  # the name is escaped
    lines = screen_lines(output)
    assert all(cell_len(line) <= WIDTH for line in lines)
    assert any(line.startswith("PRIORITY: /mnt/evidence/very long") for line in lines)
    assert any(line.startswith("match: /mnt/evidence/other.jpg (known)") for line in lines)


def test_nothing_on_a_non_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # (rich would otherwise take a file for a terminal)
    stream = io.StringIO()
    assert not ProgressBar.wanted(stream)
    bar = ProgressBar(stream)
    for event in [STARTED, *SAMPLES, ScanHit(hit(b"/x.jpg", "priority"), 1.0)]:
        bar(event)
    bar(ScanFinished(None))  # type: ignore[arg-type]
    assert stream.getvalue() == ""
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=False)
    bar = ProgressBar(io.StringIO(), console=console)
    for event in [STARTED, *SAMPLES]:
        bar(event)
    assert written(console) == ""


def test_a_dumb_terminal_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    console = Console(file=io.StringIO(), width=WIDTH, force_terminal=True)
    bar = ProgressBar(io.StringIO(), console=console)
    for event in [STARTED, *SAMPLES]:
        bar(event)
    assert written(console) == ""


def test_a_real_scan_on_an_80_column_terminal(tmp_path: Path, filters: FilterFactory) -> None:
    root = tmp_path / "dev"
    files = [write_random(root / f"d{i % 4}" / f"{i:04d}.jpg", 2000 + i, i) for i in range(300)]
    console = terminal()
    bar = ProgressBar(io.StringIO(), console=console)

    def slow(fd: int, size: int, kinds: Sequence[str], stop: threading.Event | None) -> DigestResult:
        time.sleep(0.003)  # a second or so: several refreshes
        return read_digests(fd, size, kinds, stop)

    scanner = Scanner([filters.make(files[:2], ("md5",))], workers=1, reader=slow)
    report = scanner.scan([os.fsencode(root)], bar)
    assert report.verdict == "priority_match"
    output = written(console)
    assert output.count("\x1b[2K") >= 3 and "%" in output and "ETA" in output
    lines = screen_lines(output)
    assert all(cell_len(line) <= WIDTH for line in lines)
    # the only lines that scroll are the two hits (and the end, which clears the bar)
    assert CSI.sub("", output).count("PRIORITY: ") == 2
    assert bar.live is None and "\x1b[?25h" in output


def test_the_line_counts_a_hit_as_soon_as_it_is_printed() -> None:
    console = terminal()
    bar = ProgressBar(io.StringIO(), console=console)
    bar(STARTED)
    bar(progress(hits=0, priority_hits=0))
    assert "no hits" in screen_lines(written(console))[-1]
    bar(ScanHit(hit(b"/mnt/evidence/a.jpg", "priority"), 1.0))
    assert "1 hit, 1 PRIORITY" in screen_lines(written(console))[-1]  # before the next refresh
    bar(ScanHit(hit(b"/mnt/evidence/b.jpg", "other"), 1.0))
    assert "2 hits, 1 PRIORITY" in screen_lines(written(console))[-1]
    bar(progress(hits=1, priority_hits=1))  # (counted before the second hit was sent)
    assert "2 hits, 1 PRIORITY" in screen_lines(written(console))[-1]
