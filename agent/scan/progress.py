"""The progress line on a terminal (stderr), drawn with rich: percentage, bar, files, hits so far
(priority hits highlighted), errors, rate and ETA, redrawn in place and fitted to the terminal's
width at every refresh (parts are left out when it is narrow, never wrapped); hits are printed above
it as they come (paths escaped). On anything but a terminal it prints nothing.

The percentage is the bay's (``agent.scan.events.fraction_done``), never going back. While the walk
goes on the totals are estimates (from what the filesystem holds: ``ScanProgress.files_estimated``),
so the line says ``about 34%`` (its ETA is as rough) and the file count ``1,208/~3,550`` (the
estimate) or ``1,208/1,430+`` (the files found so far, when more were found than estimated); with
no estimate (a folder that is not the top of its filesystem) it says ``walking`` until the walk is
done. At 80 columns the line keeps the percentage, the bar, files, hits and the ETA; the bytes
read, then the rate, then the errors are left out first. Example::

    bar = ProgressBar(sys.stderr) if ProgressBar.wanted(sys.stderr) else None
    report = scanner.scan(roots, bar)   # the line is cleared when the scan finishes

    about 34% ━━━━━━━━━━━━╺━━━━━━━━ 1,208/1,430+ files  3 hits, 1 PRIORITY  ETA 0:12
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, replace
from typing import TextIO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar as RichBar
from rich.table import Table
from rich.text import Text

from agent.scan.events import ScanEvent, ScanFinished, ScanHit, ScanProgress, ScanStarted, fraction_done
from agent.scan.names import shown

MIN_BAR = 10  # narrower than this, parts of the line are left out instead
MAX_BAR = 40
GAP = "  "
MAX_ETA = 100 * 3600.0  # a longer ETA (a rate that has hardly started) is shown as ">100 h"
PRIORITY_STYLE = "bold red"


def human_bytes(count: float) -> str:
    """``human_bytes(1536) == '1.5 KB'`` (decimal units, as disks are sold)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_of(progress: ScanProgress, fraction: float | None = None) -> float | None:
    """Seconds left: the scan's own once the walk is done; before, from the fraction done and the
    time it took (the same figure the scan's gives once the walk is done)."""
    if progress.walk_done:
        return progress.eta_s
    if fraction is None:
        fraction = fraction_done(progress)
    if not fraction:
        return None
    return max(0.0, progress.elapsed_s * (1 - fraction) / fraction)


def _files_text(p: ScanProgress) -> str:
    if p.walk_done:
        return f"{p.files_done:,}/{p.files_found:,} files"
    if p.files_estimated is not None and p.files_estimated > p.files_found:
        return f"{p.files_done:,}/~{p.files_estimated:,} files"
    return f"{p.files_done:,}/{p.files_found:,}+ files"


def _hits_text(progress: ScanProgress) -> Text:
    if not progress.hits:
        return Text("no hits")
    text = Text(f"{progress.hits:,} hit" + ("" if progress.hits == 1 else "s"))
    if progress.priority_hits:
        text.append(", ")
        text.append(f"{progress.priority_hits:,} PRIORITY", style=PRIORITY_STYLE)
    return text


@dataclass
class ProgressLine:
    """One line for the last ``ScanProgress``, fitted to the width it is rendered at;
    ``at_least``: the fraction shown before (what is shown never goes back)."""

    progress: ScanProgress
    at_least: float | None = None

    @property
    def fraction(self) -> float | None:
        return fraction_done(self.progress, self.at_least)

    def parts(self) -> tuple[Text, list[tuple[int, Text]]]:
        """The percentage, then the other parts with their rank (the highest is left out first)."""
        p = self.progress
        about = "" if p.walk_done else "about "
        fraction = self.fraction
        head = Text("walking" if fraction is None else f"{about}{fraction * 100:.0f}%", style="bold")
        eta = eta_of(p, fraction)
        tail: list[tuple[int, Text]] = [
            (0, Text(_files_text(p))),
            (0, _hits_text(p)),
        ]
        if p.errors:
            tail.append((1, Text(f"{p.errors:,} error" + ("" if p.errors == 1 else "s"), style="yellow")))
        tail.append((3, Text(f"{human_bytes(p.bytes_read)} read")))
        tail.append((2, Text(f"{human_bytes(p.bytes_per_s)}/s")))
        shown_eta = "--" if eta is None else clock(eta) if eta < MAX_ETA else f">{MAX_ETA // 3600:.0f} h"
        tail.append((0, Text(f"ETA {shown_eta}")))
        return head, tail

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        head, tail = self.parts()
        for drop in (4, 3, 2, 1):
            kept = [text for rank, text in tail if rank < drop]
            rest = Text(GAP).join(kept)
            bar = width - head.cell_len - rest.cell_len - 2  # a space on each side of the bar
            if bar >= MIN_BAR or drop == 1:
                break
        line = Table.grid(padding=(0, 1))
        line.add_column(no_wrap=True)
        if bar >= MIN_BAR:
            bar = min(bar, MAX_BAR)
            fraction = self.fraction
            pulse = fraction is None
            line.add_column(width=bar, no_wrap=True)
            line.add_column(no_wrap=True, overflow="ellipsis")
            line.add_row(head, RichBar(1.0, fraction or 0.0, width=bar, pulse=pulse), rest)
        else:  # too narrow for a bar: the line is cut, never wrapped
            text = Text.assemble(head, " ", rest)
            text.truncate(width, overflow="ellipsis")
            line.add_column(no_wrap=True, overflow="ellipsis", max_width=width)
            line.add_row(text)
        yield line


class ProgressBar:
    """A scan's ``on_event`` (see the module docstring); ``console`` for tests (a given width)."""

    def __init__(self, stream: TextIO, console: Console | None = None) -> None:
        self.stream = stream
        if console is None:
            # force_terminal: a file is never drawn on, even with FORCE_COLOR set
            console = Console(file=stream, force_terminal=self.wanted(stream), highlight=False)
        self.console = console
        # a dumb terminal cannot redraw a line in place: nothing, like a file
        self.enabled = console.is_terminal and not console.is_dumb_terminal
        self.live: Live | None = None
        self.last: ScanProgress | None = None
        self.fraction: float | None = None  # the fraction shown so far (it never goes back)
        self.hits = self.priority_hits = 0  # ScanHit events of this scan

    def _counted(self, progress: ScanProgress) -> ScanProgress:
        """``progress`` with the hits printed so far, which may be ahead of its counts."""
        hits, priority = max(progress.hits, self.hits), max(progress.priority_hits, self.priority_hits)
        return replace(progress, hits=hits, priority_hits=priority)

    @staticmethod
    def wanted(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __call__(self, event: ScanEvent) -> None:
        if not self.enabled:
            return
        if isinstance(event, ScanStarted):
            self._start()
        elif isinstance(event, ScanProgress):
            live = self.live or self._start()
            self.last = event
            drawn = ProgressLine(self._counted(event), self.fraction)
            self.fraction = drawn.fraction
            live.update(drawn, refresh=True)
        elif isinstance(event, ScanHit):
            hit = event.hit
            line = Text()
            if hit.priority:
                line.append("PRIORITY", style=PRIORITY_STYLE)
            else:
                line.append("match", style="bold")
            line.append(f": {shown(hit.path)} ({', '.join(hit.categories)})")
            self.console.print(line, soft_wrap=False)
            self.hits += 1
            self.priority_hits += hit.priority
            if self.live is not None and self.last is not None:  # the line counts it at once
                self.live.update(ProgressLine(self._counted(self.last), self.fraction), refresh=True)
        elif isinstance(event, ScanFinished):
            self.stop()

    def _start(self) -> Live:
        self.stop()
        self.last, self.fraction, self.hits, self.priority_hits = None, None, 0, 0
        self.live = Live(
            Text(""),
            console=self.console,
            auto_refresh=False,  # redrawn at each ScanProgress (4 a second): no thread of its own
            transient=True,  # cleared at the end: the summary follows on stdout
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()
        atexit.register(self.stop)  # the cursor is shown again even if the scan never finishes
        return self.live

    def stop(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            atexit.unregister(self.stop)
            live.stop()
