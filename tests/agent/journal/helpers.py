"""Shared builders for journal and station tests: a station, a kiosk journal (of a kiosk enrolled at
that station, unless asked otherwise), synthetic records."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from agent.daemon.provision import ENROLLMENT_NAME, provision_kiosk
from agent.journal import EncryptedJournal
from agent.journal.segment_format import RecordFrame, SealFrame, parse_frames, parse_header
from filters.errors import FieldtriageError
from station.home import StationHome
from station.kiosks import enroll_kiosk, read_enrollment
from station.store import Store


def make_station(folder: Path) -> StationHome:
    home = StationHome(folder)
    home.init()
    return home


def enroll(home: StationHome, device_key: Path, name: str | None = None) -> str:
    """Enroll the kiosk whose device key is ``device_key`` (created if absent) at ``home`` the way an
    engineer does: ``fieldtriage agent provision`` on the kiosk writes enrollment.json beside the
    key, ``fieldtriage station kiosks add`` reads it. Once enrolled, nothing changes. Its kiosk id."""
    kiosk_id = str(provision_kiosk(device_key)["kiosk_id"])
    store = Store.open(home.database_path)
    try:
        if kiosk_id not in store.kiosk_ids():
            enrollment = read_enrollment(device_key.with_name(ENROLLMENT_NAME))
            # named by its id's start: the lines that name it read as before enrollment
            enroll_kiosk(store, enrollment, name or kiosk_id[:8], "test bench")
    finally:
        store.close()
    return kiosk_id


def open_journal(
    folder: Path, home: StationHome, *, enrolled: bool = True, **options: Any
) -> EncryptedJournal:
    """The journal of the kiosk keyed by ``folder/device.key``, enrolled at ``home`` first unless
    ``enrolled`` is False."""
    if enrolled:
        enroll(home, folder / "device.key")
    return EncryptedJournal.open(
        folder / "journal", folder / "device.key", home.journal_public_path, **options
    )


class SetClock:
    """A journal clock whose time fields a test sets, sane or not: ``fields`` is what the next
    records (and segment headers) get; ``queue`` is used up first, one entry per call, in the
    writer's order (a record's time, then the header of a segment it starts): a map of fields to
    override, or ``SetClock.exactly(value)`` for a value given as it is."""

    def __init__(self, wall_ns: int = 1_750_000_000 * 10**9) -> None:
        self.fields: dict[str, Any] = {
            "wall_ns": wall_ns,
            "monotonic_ns": 1_000,
            "boot_id": "3b1f4c1e-0000-4000-8000-000000000001",
            "clock_synchronised": True,
        }
        self.queue: list[Any] = []

    @staticmethod
    def exactly(value: Any) -> tuple[str, Any]:
        return ("exactly", value)

    def now(self) -> Any:
        if self.queue:
            value = self.queue.pop(0)
            if isinstance(value, tuple) and value[:1] == ("exactly",):
                return value[1]
            return {**self.fields, **value}
        self.fields["monotonic_ns"] += 1_000
        return dict(self.fields)


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
