"""Shared builders for journal and station tests: a station, a kiosk journal, synthetic records."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from agent.journal import EncryptedJournal
from agent.journal.segment_format import RecordFrame, SealFrame, parse_frames, parse_header
from filters.errors import FieldtriageError
from station.home import StationHome


def make_station(folder: Path) -> StationHome:
    home = StationHome(folder)
    home.init()
    return home


def open_journal(folder: Path, home: StationHome, **options: Any) -> EncryptedJournal:
    return EncryptedJournal.open(
        folder / "journal", folder / "device.key", home.journal_public_path, **options
    )


def write_records(journal: EncryptedJournal, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        journal.append({"type": "test", "n": number, "blob": bytes([number % 256]) * 3})


def frame_spans(path: Path) -> tuple[int, list[tuple[int, int]], tuple[int, int] | None]:
    """(frames offset, [(start, end) of each record frame], (start, end) of the seal or None)."""
    data = memoryview(path.read_bytes())
    header = parse_header(data)
    records, seal = [], None
    for frame in parse_frames(data, header.frames_offset):
        if isinstance(frame, RecordFrame):
            records.append((frame.offset, frame.end))
        elif isinstance(frame, SealFrame):
            seal = (frame.offset, frame.end)
    return header.frames_offset, records, seal


def run_cli(register: Callable[[Any], None], argv: Sequence[str]) -> tuple[int, str, str]:
    """Parse and dispatch like agent/cli.py main: (status, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="fieldtriage")
    register(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        args = parser.parse_args(list(argv))
        try:
            status: int = args.handler(args)
        except FieldtriageError as error:
            print(f"fieldtriage: {error}", file=err)
            status = 2
    return status, out.getvalue(), err.getvalue()
