"""An import nothing can break: every record checked against its schema before it is stored, what
fails kept aside with an alarm while the rest goes on, and reports that never fail; warnings that
clear when what was missing arrives; a power cut's zeros a notice on both sides; CSV cells guarded
behind spaces. Segments are made by the real kiosk journal with real keys."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.journal.keys import load_or_create_device_key
from agent.journal.records import filters_record, lights_record, scan_finished_record, scan_started_record
from agent.journal.tail import read_tail
from filters.errors import JournalError
from station import cli as station_cli
from station.findings import Finding
from station.home import StationHome
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import (
    SetClock,
    enroll,
    frame_spans,
    make_station,
    open_journal,
    run_cli,
    write_records,
)
from tests.station.review_helpers import block_sample_fields
from tests.station.test_station_cli import HOSTILE, daemon_scan_record, synthetic_report


def station(*argv: str) -> tuple[int, str, str]:
    return run_cli(station_cli.register, ["station", *argv])


def stored(home: StationHome) -> list[dict[str, Any]]:
    store = Store.open(home.database_path)
    try:
        return [body_from_json(b) for (b,) in store.query("SELECT body FROM records ORDER BY segment, idx")]
    finally:
        store.close()


def serious(findings: list[Finding]) -> list[tuple[int | None, int | None, str]]:
    return [(f.segment, f.record, f.message) for f in findings if f.severity != "notice"]


def every_report_works(home: StationHome, folder: Path) -> dict[str, Any]:
    """``station report`` in every format (and ``station kiosks``) exits 0; the JSON report."""
    for argv in (
        ["report", "--format", "html", "-o", str(folder / "html")],
        ["report", "--format", "csv"],
        ["kiosks"],
        ["kiosks", "--json"],
    ):
        status, out, err = station(*argv, "--home", str(home.folder))
        assert status == 0, (argv, err)
    status, out, err = station("report", "--format", "json", "--home", str(home.folder))
    assert status == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def crash(journal: Any) -> None:
    """What SIGKILL or a power cut leaves: no seal, descriptors gone."""
    if journal._segment is not None:
        os.close(journal._segment.fd)
        journal._segment = None
    os.close(journal._lock_fd)
    journal._lock_fd = None


# -- the defects seen, one test each ------------------------------------------------------------


def test_a_record_time_of_2_64_minus_1_is_kept_aside_and_the_other_segments_import(tmp_path: Path) -> None:
    """It used to stop the whole import with an OverflowError into SQLite: none of the stick's
    genuine segments was stored."""
    home = make_station(tmp_path / "station")
    clock = SetClock()
    with open_journal(tmp_path, home, clock=clock, max_segment_records=2) as journal:
        write_records(journal, 9)  # segments 0-3 and the first record of segment 4
        clock.queue = [{"wall_ns": 2**64 - 1}]
        journal.append({"type": "test", "n": 99})  # segment 4, record 1
        write_records(journal, 8, start=9)  # segments 5-8
    summary = import_sources(home, [tmp_path / "journal"])
    assert sorted(r["n"] for r in stored(home)) == list(range(17))
    assert summary.records_new == 17 and summary.records_kept_aside == 1
    assert serious(summary.findings) == [
        (
            4,
            1,
            "not a valid journal record (time.wall_ns: 18446744073709551615 is not an integer from 0 "
            "to 9223372036854775807): kept aside, left out of the reports",
        )
    ]
    [kept] = Store.open(home.database_path).kept_records()
    assert (kept.segment, kept.index, kept.body["n"], kept.body["time"]["wall_ns"]) == (4, 1, 99, 2**64 - 1)
    every_report_works(home, tmp_path)
    again = import_sources(home, [tmp_path / "journal"])
    assert again.records_new == 0 and again.records_known == 18 and again.new_findings == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("wall_ns", 2**64 - 1),
        ("wall_ns", 2**70),  # a CBOR bignum
        ("wall_ns", -1),
        ("monotonic_ns", 2.5),
        ("boot_id", [1, 2]),  # "not a usable station database"
        ("clock_synchronised", "yes"),
    ],
)
@pytest.mark.parametrize("where", ["record", "segment header"])
def test_odd_time_fields_in_a_record_or_a_segment_header(
    tmp_path: Path, field: str, value: object, where: str
) -> None:
    home = make_station(tmp_path / "station")
    clock = SetClock()
    with open_journal(tmp_path, home, clock=clock, max_segment_records=2) as journal:
        write_records(journal, 2)
        # the record that starts segment 1: its time, then the header's "created"
        clock.queue = [{field: value}, {}] if where == "record" else [{}, {field: value}]
        journal.append({"type": "test", "n": 2})
        write_records(journal, 3, start=3)
    summary = import_sources(home, [tmp_path / "journal"])
    if where == "segment header" and value in (2**70, 2.5):  # a header's CBOR: no tags, no floats
        assert any("malformed header" in m for _, _, m in serious(summary.findings))
        assert sorted(r["n"] for r in stored(home)) == [0, 1, 4, 5]
        return
    [(segment, record, message)] = serious(summary.findings)
    if where == "record":
        assert (segment, record) == (1, 0) and message.startswith(
            f"not a valid journal record (time.{field}: "
        )
        assert sorted(r["n"] for r in stored(home)) == [0, 1, 3, 4, 5]
    else:
        assert (segment, record) == (1, None)
        assert message.startswith(f"header's time fields are not valid (created.{field}: ")
        assert sorted(r["n"] for r in stored(home)) == [0, 1, 2, 3, 4, 5]
    every_report_works(home, tmp_path)


@pytest.mark.parametrize(
    "started",
    [
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC: every report format failed
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC: the same
        "10000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2025-13-01T00:00:00Z",
        12,
    ],
)
def test_a_started_time_out_of_any_sane_year_is_kept_aside_and_reports_work(
    tmp_path: Path, started: object
) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        journal.append(daemon_scan_record())
        journal.append({**daemon_scan_record(), "started": started})
    summary = import_sources(home, [tmp_path / "journal"])
    document = every_report_works(home, tmp_path)
    assert len(document["scans"]) == 1
    [(segment, record, message)] = serious(summary.findings)
    assert (segment, record) == (0, 1) and "started: " in message and "kept aside" in message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("scan", "hits", 0, "matches"), 5),  # broke the HTML report
        (("scan", "hits", 0, "digests"), ["md5"]),
        (("scan", "hits", 0, "size"), "big"),
        (("scan", "hits", 0), "a hit"),
        (("scan", "counts"), {"files_seen": -1}),
        (("scan", "verdict"), "all clear"),
        (("device",), {"vendor": {"nested": 1}}),
        (("filters",), 5),
        (("lights_shown",), [None]),
        (("scan_id",), 7),
        (("type",), ["scan"]),
    ],
)
def test_a_field_of_the_wrong_type_is_kept_aside_and_reports_work(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    home = make_station(tmp_path / "station")
    odd = daemon_scan_record()
    odd["scan"] = synthetic_report(HOSTILE)
    target: Any = odd
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with open_journal(tmp_path, home) as journal:
        journal.append(daemon_scan_record())
        journal.append(odd)
    summary = import_sources(home, [tmp_path / "journal"])
    document = every_report_works(home, tmp_path)
    assert len(document["scans"]) == 1
    [(segment, record, message)] = serious(summary.findings)
    shown = ".".join(str(p) for p in path).replace(".0", "[0]")
    assert (segment, record) == (0, 1) and message.startswith(f"not a valid journal record ({shown}"), message
    [kept] = Store.open(home.database_path).kept_records()
    assert kept.body["bay"] == "left" and shown in kept.reason


def test_unknown_fields_are_allowed_and_stored(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    extra = {**daemon_scan_record(), "exhibit": {"reference": "EX-1", "officer": 7}, "$b64": "!", "$$x": [1]}
    with open_journal(tmp_path, home) as journal:
        journal.append(extra)
    summary = import_sources(home, [tmp_path / "journal"])
    assert serious(summary.findings) == [] and stored(home) == [{**extra, "time": stored(home)[0]["time"]}]
    every_report_works(home, tmp_path)


# -- warnings that clear, power cuts, CSV ---------------------------------------------------------


def test_a_segment_missing_warning_clears_when_the_segment_arrives(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home, max_segment_records=2) as journal:
        write_records(journal, 8)  # segments 0-3
    later = tmp_path / "later"
    later.mkdir()
    (tmp_path / "journal" / "segment-00000001.ftj").rename(later / "segment-00000001.ftj")
    status, out, _ = station("import", "--home", str(home.folder), str(tmp_path / "journal"))
    assert status == 1 and "segment missing (segment 2 follows it)" in out
    status, out, _ = station("import", "--home", str(home.folder), str(later))
    assert status == 0, out
    document = every_report_works(home, tmp_path)
    assert document["findings"] == [], "the warning is gone from the reports"
    assert Store.open(home.database_path).query("SELECT COUNT(*) FROM findings")[0][0] == 0


def test_a_records_missing_warning_clears_when_the_records_arrive(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home, max_segment_records=2) as journal:
        write_records(journal, 6)  # segments 0-2
    segment = tmp_path / "journal" / "segment-00000001.ftj"
    whole = segment.read_bytes()
    _, records, _ = frame_spans(segment)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / segment.name).write_bytes(whole[: records[0][1]])  # record 1 and the seal not there yet
    for name in ("segment-00000000.ftj", "segment-00000002.ftj"):
        shutil.copy(tmp_path / "journal" / name, cut / name)
    status, out, _ = station("import", "--home", str(home.folder), str(cut))
    assert status == 1 and "1 of its 2 records missing (segment 2 says it had 2)" in out
    status, out, _ = station("import", "--home", str(home.folder), str(segment))
    assert status == 0, out
    assert every_report_works(home, tmp_path)["findings"] == []


def test_a_zero_filled_tail_is_a_torn_tail_notice_on_both_sides(tmp_path: Path) -> None:
    """The kiosk sets such a tail aside as torn (agent/journal/tail.py); the station called it an
    alarm ("unknown frame type 0x00")."""
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 4)
    crash(journal)
    path = tmp_path / "journal" / "segment-00000000.ftj"
    with path.open("ab") as f:
        f.write(bytes(4096))
    tail = read_tail(tmp_path / "journal", load_or_create_device_key(tmp_path / "device.key").public_key())
    assert (tail.previous_records, tail.previous_torn_bytes) == (4, 4096), "the kiosk: torn"
    summary = import_sources(home, [tmp_path / "journal"])
    assert serious(summary.findings) == [], [f.line() for f in summary.findings]
    [notice] = [f for f in summary.findings if f.severity == "notice"]
    assert (
        notice.message.startswith("torn tail after a power cut: the last 4096 bytes") and notice.segment == 0
    )
    assert sorted(r["n"] for r in stored(home)) == [0, 1, 2, 3]


def test_zeros_from_inside_the_last_frame_are_a_torn_tail_too(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 3)
    crash(journal)
    path = tmp_path / "journal" / "segment-00000000.ftj"
    _, records, _ = frame_spans(path)
    start, end = records[-1]
    data = path.read_bytes()
    path.write_bytes(data[: start + 12] + bytes(end - start - 12 + 1000))  # its blocks never written
    tail = read_tail(tmp_path / "journal", load_or_create_device_key(tmp_path / "device.key").public_key())
    assert (tail.previous_records, tail.previous_torn_bytes) == (2, end - start + 1000)
    summary = import_sources(home, [tmp_path / "journal"])
    assert serious(summary.findings) == [], [f.line() for f in summary.findings]
    assert any(f.message.startswith("torn tail after a power cut") for f in summary.findings)
    assert sorted(r["n"] for r in stored(home)) == [0, 1]


def test_bytes_no_power_cut_leaves_are_still_an_alarm(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 2)
    crash(journal)
    path = tmp_path / "journal" / "segment-00000000.ftj"
    with path.open("ab") as f:
        f.write(b"\xff" * 50 + bytes(500))
    summary = import_sources(home, [tmp_path / "journal"])
    assert any("unknown frame type 0xff" in m for _, _, m in serious(summary.findings))


@pytest.mark.parametrize("damage", ["empty", "zeros", "header then zeros", "cut in the signature"])
def test_a_segment_cut_short_while_it_was_created_is_a_notice(tmp_path: Path, damage: str) -> None:
    home = make_station(tmp_path / "station")
    journal = open_journal(tmp_path, home)
    write_records(journal, 3)
    journal.rotate()
    journal._segment = journal._start_segment()
    crash(journal)
    path = tmp_path / "journal" / "segment-00000001.ftj"
    preamble = path.read_bytes()
    path.write_bytes(
        {
            "empty": b"",
            "zeros": bytes(4096),
            "header then zeros": preamble[:40] + bytes(4096 - 40),
            "cut in the signature": preamble[:-10],
        }[damage]
    )
    with open_journal(tmp_path, home) as journal:  # the kiosk sets it aside and writes on
        write_records(journal, 1, start=3)
    summary = import_sources(home, [tmp_path / "journal"])
    assert serious(summary.findings) == [], [f.line() for f in summary.findings]
    [torn] = [f for f in summary.findings if f.message.startswith("torn tail after a power cut")]
    assert torn.segment == 1 and "cut short while it was created" in torn.message
    assert sorted(r["n"] for r in stored(home)) == [0, 1, 2, 3]


@pytest.mark.parametrize("prefix", [" ", "   ", "\xa0", "\u2003", "\u3000", " \xa0 "])
@pytest.mark.parametrize("formula", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_cells_behind_spaces_are_guarded(tmp_path: Path, prefix: str, formula: str) -> None:
    home = make_station(tmp_path / "station")
    with open_journal(tmp_path, home) as journal:
        device = {"vendor": prefix + formula, "model": "Stick", "serial": "S-1"}
        journal.append(scan_started_record(prefix + formula, device, ["f1"], prefix + formula))
        journal.append(scan_finished_record(prefix + formula, synthetic_report("/a.jpg"), [prefix + formula]))
    import_sources(home, [tmp_path / "journal"])
    status, out, _ = station("report", "--format", "csv", "--home", str(home.folder))
    assert status == 0
    rows = list(csv.reader(io.StringIO(out)))
    cells = [c for row in rows[1:] for c in row]
    assert sum(formula in c for c in cells) >= 3
    for c in cells:
        assert c.lstrip()[:1] not in ("=", "+", "-", "@") or c.startswith("'"), c


# -- property: any value in any field of a validly signed record ---------------------------------

TEMPLATES: list[dict[str, Any]] = [
    daemon_scan_record(),
    {**daemon_scan_record(), "scan": synthetic_report(HOSTILE)},
    {**daemon_scan_record(), **block_sample_fields([(40 << 20, "priority"), (41 << 20, "other")])},
    scan_started_record("s-1", {"vendor": "V", "model": "M", "serial": "S", "size": 1 << 30}, ["f1"], "auto"),
    scan_finished_record("s-1", synthetic_report(HOSTILE), ["busy", "red"]),
    lights_record("busy", "s-1"),
    filters_record([{"id": "f1", "filter_id": "f1", "name": "demo", "entries": 3, "signer": "00" * 16}]),
    {"type": "not_scanned", "bay": "left", "device": {"vendor": "V"}, "reason": "no free bay"},
    {"type": "sync", "token_id": "ab" * 16, "fs_uuid": "aaaa-0001", "partition": 1,
     "token_created": 1_700_000_000, "segments_copied": ["segment-00000000.ftj"], "filters_taken": [],
     "trust_keys_taken": [], "refused": []},
    {"type": "phone_state", "bay": "left", "device": {"kind": "phone"}, "state": "unlock",
     "message": "unlock it", "at": "2025-06-01T10:00:00.000000Z",
     "storages": [{"folder": "/s", "description": "Internal", "storage_id": 1, "capacity": 2, "free": 1}]},
]  # fmt: skip
TIME_KEYS = ("wall_ns", "monotonic_ns", "boot_id", "clock_synchronised")
ODD_TEXT = [
    "",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "2025-06-01T10:00:00Z",
    "priority_match",
    "=cmd|' /C calc'!A0",
    "\xa0=1",
    "$b64",
    "<script>",
    "\u202e",
]
ODD_NUMBERS = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64), -(2**64) - 1, float("nan"), float("inf")]


HEADER_NUMBERS = [
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**64),
]  # what a header's strict CBOR holds (no tags, floats)


def beyond_json() -> int:
    """An integer of more than 4,300 digits (JSON readers refuse it; made lazily: Hypothesis
    cannot show it)."""
    return 10**5000


def cbor_values(wide: bool = True) -> st.SearchStrategy[Any]:
    """Whatever CBOR (as the journal writes it) can hold; not ``wide``: what a segment header holds
    (no bignums or floats, which its strict decoder refuses with the whole segment, and nothing too
    large for its 4 KiB)."""
    numbers = (
        st.sampled_from(ODD_NUMBERS) | st.builds(beyond_json) if wide else st.sampled_from(HEADER_NUMBERS)
    )
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**64), max_value=2**64 - 1)
        | numbers
        | (st.floats() if wide else st.none())
        | st.text(max_size=12)
        | st.sampled_from(ODD_TEXT)
        | st.binary(max_size=8)
    )
    keys = st.text(max_size=6) | st.sampled_from(["$b64", "$$x", "path", "matches", "hits", "type"])
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=8,
    )


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield (*prefix, key)
        yield from paths(item, (*prefix, key))


def put(record: Any, path: tuple[Any, ...], value: Any) -> None:
    def holds(container: Any, key: Any) -> bool:
        if isinstance(container, dict):
            return key in container
        return isinstance(container, list) and isinstance(key, int) and key < len(container)

    target = record
    for step in path[:-1]:
        if not holds(target, step):
            return  # an earlier change replaced what led here
        target = target[step]
    if isinstance(target, dict) or holds(target, path[-1]):
        target[path[-1]] = value


@st.composite
def odd_records(draw: st.DrawFn) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """A record from a template with some fields (its time fields included) replaced by anything,
    the time it gets, and odd ``created`` fields for the header of the segment it starts."""
    record = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    targets = list(paths(record))
    stamp: Any = {}
    created: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["field", "field", "field", "time", "whole time", "created", "new"]))
        if where == "field" and targets:
            put(record, draw(st.sampled_from(targets)), draw(cbor_values()))
        elif where == "time" and isinstance(stamp, dict):  # not after "whole time"
            stamp[draw(st.sampled_from(TIME_KEYS))] = draw(cbor_values())
        elif where == "whole time":  # a map (the writer takes no other), with any keys
            stamp = SetClock.exactly(
                draw(st.dictionaries(st.sampled_from([*TIME_KEYS, "x"]), cbor_values(), max_size=5))
            )
        elif where == "created":
            created[draw(st.sampled_from(TIME_KEYS))] = draw(cbor_values(wide=False))
        else:
            key = draw(st.text(max_size=8).filter(lambda k: k not in ("time", "kiosk")))  # the journal's
            record[key] = draw(cbor_values())
    return record, stamp, created


@pytest.fixture(scope="module")
def enrolled_station(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A station with one kiosk enrolled: (station folder, device key), copied for each example."""
    root = tmp_path_factory.mktemp("property")
    home = make_station(root / "station")
    enroll(home, root / "device.key")
    return home.folder, root / "device.key"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(odd=odd_records())
def test_any_value_in_any_field_never_breaks_the_import_or_a_report(
    enrolled_station: tuple[Path, Path], odd: tuple[dict[str, Any], Any, dict[str, Any]]
) -> None:
    record, stamp, created = odd
    station_folder, device_key = enrolled_station
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        home = StationHome(root / "station")
        shutil.copytree(station_folder, home.folder)
        shutil.copy(device_key, root / "device.key")
        clock = SetClock()
        with open_journal(root, home, enrolled=False, clock=clock) as journal:
            journal.append({"type": "test", "n": 0})
            journal.rotate()
            clock.queue = [stamp, created]  # the odd record's time, then its segment's header
            try:
                journal.append(record)
            except JournalError:  # the kiosk's own limits (a record over 8 MiB, a header over 4 KiB)
                assume(False)
            journal.append({"type": "test", "n": 1})
            journal.rotate()
            journal.append({"type": "test", "n": 2})
        summary = import_sources(home, [root / "journal"])
        genuine = sorted(r["n"] for r in stored(home) if r.get("type") == "test" and "n" in r and len(r) == 3)
        assert genuine == [0, 1, 2], [f.line() for f in summary.findings]
        assert summary.records_new + summary.records_kept_aside >= 3
        status, out, _ = station("import", "--home", str(home.folder), str(root / "journal"))
        assert status in (0, 1) and "0 records imported" in out
        every_report_works(home, root)
