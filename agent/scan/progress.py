"""A one-line progress bar on a terminal (stderr): files, bytes, rate, hits so far and ETA.

Hits are printed above the bar as they come (paths escaped). Use it as the ``on_event`` of a scan,
only when the stream is a terminal (``ProgressBar.wanted``).
"""

from __future__ import annotations

from typing import TextIO

from agent.scan.events import ScanEvent, ScanFinished, ScanHit, ScanProgress
from agent.scan.names import shown

BAR_WIDTH = 24
CLEAR_LINE = "\r\x1b[K"


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


def render(progress: ScanProgress) -> str:
    if progress.walk_done and progress.bytes_to_read:
        fraction = min(1.0, progress.bytes_read / progress.bytes_to_read)
        filled = int(fraction * BAR_WIDTH)
        bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction * 100:3.0f}%"
    else:
        bar = "[walking" + " " * (BAR_WIDTH - 7) + "]     "
    eta = progress.eta_s
    parts = [
        bar,
        f"{progress.files_done:,}/{progress.files_found:,} files",
        f"{human_bytes(progress.bytes_read)} read",
        f"{human_bytes(progress.bytes_per_s)}/s",
        f"hits {progress.hits} ({progress.priority_hits} priority)",
    ]
    if progress.errors:
        parts.append(f"errors {progress.errors}")
    parts.append(f"ETA {clock(eta)}" if eta is not None else "ETA --")
    return "  ".join(parts)


class ProgressBar:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    @staticmethod
    def wanted(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __call__(self, event: ScanEvent) -> None:
        if isinstance(event, ScanProgress):
            self.stream.write(CLEAR_LINE + render(event))
        elif isinstance(event, ScanHit):
            hit = event.hit
            label = "PRIORITY" if hit.priority else "match"
            categories = ", ".join(hit.categories)
            self.stream.write(f"{CLEAR_LINE}{label}: {shown(hit.path)} ({categories})\n")
        elif isinstance(event, ScanFinished):
            self.stream.write(CLEAR_LINE)
        self.stream.flush()
