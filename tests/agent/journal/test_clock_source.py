"""Where a record's time comes from (``clock_source``): NTP, a plausible RTC the system clock agrees
with, a sync stick's step in this boot, or nothing; records carry it, segment headers keep the four
fields of formats 1 and 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.journal.clock import (
    HEADER_TIME_FIELDS,
    RTC_PLAUSIBLE,
    ClockReader,
    StepMarker,
    header_time,
    read_rtc_seconds,
    rtc_agrees,
)
from agent.journal.segment_format import parse_header
from station.importer import import_sources
from station.store import Store, body_from_json
from tests.agent.journal.helpers import make_station, open_journal

NOW_S = 1_780_000_000  # 2026-05-28
NOW_NS = NOW_S * 10**9
BOOT = "b00710c1-0000-4000-8000-000000000001"
HOUR_NS = 3600 * 10**9


def reader(
    *, kernel: bool | None = False, rtc: int | None = None, stepped: bool = False, wall_ns: int = NOW_NS
) -> ClockReader:
    return ClockReader(
        boot_id=BOOT, synchronised=lambda: kernel, wall_ns=lambda: wall_ns, monotonic_ns=lambda: HOUR_NS,
        rtc=lambda: rtc, stepped=lambda: stepped,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        ({"kernel": True}, (True, "ntp")),
        ({"kernel": True, "rtc": 0, "stepped": True}, (True, "ntp")),  # NTP is best
        ({"rtc": NOW_S}, (True, "rtc")),
        ({"rtc": NOW_S - 5}, (True, "rtc")),  # whole seconds, a moment to read
        ({"kernel": None, "rtc": NOW_S}, (True, "rtc")),
        ({"rtc": 946_684_800}, (False, "none")),  # a battery-less RTC back in 2000
        ({"rtc": 0, "stepped": True}, (False, "sync_stick")),
        ({"rtc": NOW_S + 86_400}, (False, "none")),  # the system clock set back a day: not agreeing
        ({"rtc": NOW_S - 86_400, "stepped": True}, (False, "sync_stick")),  # stepped past the RTC
        ({"stepped": True}, (False, "sync_stick")),
        ({}, (False, "none")),
        ({"kernel": None}, (None, "none")),
        ({"kernel": None, "stepped": True}, (False, "sync_stick")),  # a lower bound, known not synchronised
    ],
)
def test_clock_source(probes: dict[str, object], expected: tuple[bool | None, str]) -> None:
    stamp = reader(**probes).now()  # type: ignore[arg-type]
    assert (stamp["clock_synchronised"], stamp["clock_source"]) == expected
    assert stamp["wall_ns"] == NOW_NS and stamp["monotonic_ns"] == HOUR_NS and stamp["boot_id"] == BOOT


def test_rtc_agreement_allows_for_drift_over_the_uptime() -> None:
    assert rtc_agrees(NOW_S, NOW_NS + 9 * 10**9, 0)
    assert not rtc_agrees(NOW_S, NOW_NS + 11 * 10**9, 0)
    week_ns = 7 * 86_400 * 10**9  # 200 ppm of a week: 121 s
    assert rtc_agrees(NOW_S, NOW_NS + 120 * 10**9, week_ns)
    assert not rtc_agrees(NOW_S, NOW_NS + 140 * 10**9, week_ns)
    assert not rtc_agrees(None, NOW_NS, 0)
    assert not rtc_agrees(RTC_PLAUSIBLE[1], RTC_PLAUSIBLE[1] * 10**9, 0)  # 2100: a broken RTC


def test_rtc_read_through_sysfs(tmp_path: Path) -> None:
    assert read_rtc_seconds(tmp_path / "rtc0") is None  # no RTC
    (tmp_path / "since_epoch").write_text(f"{NOW_S}\n")
    assert read_rtc_seconds(tmp_path) == NOW_S
    for odd in ("", "-1", "12x", "9" * 30):
        (tmp_path / "since_epoch").write_text(odd)
        assert read_rtc_seconds(tmp_path) is None, odd


def test_the_step_marker_counts_for_its_boot_only(tmp_path: Path) -> None:
    marker = tmp_path / "step.json"
    seen = StepMarker(BOOT, marker)
    assert seen() is False
    marker.write_text(json.dumps({"boot_id": "another boot", "to_ns": NOW_NS}))
    assert seen() is False
    marker.write_text(json.dumps({"boot_id": BOOT, "to_ns": NOW_NS, "pad": "x"}))  # another size: read again
    assert seen() is True
    marker.write_text("not json at all")
    assert seen() is False
    marker.unlink()
    assert seen() is False


def test_a_reader_given_its_kernel_probe_reads_no_rtc_or_marker() -> None:
    stamp = ClockReader(boot_id=BOOT, synchronised=lambda: False).now()
    assert (stamp["clock_synchronised"], stamp["clock_source"]) == (False, "none")


def test_the_real_clock_reader_says_something_sane() -> None:
    stamp = ClockReader().now()
    assert stamp["clock_source"] in ("ntp", "rtc", "sync_stick", "none")
    assert stamp["clock_synchronised"] is (stamp["clock_source"] in ("ntp", "rtc")) or (
        stamp["clock_source"] == "none" and stamp["clock_synchronised"] is None
    )


def test_header_time_keeps_the_four_fields_of_formats_1_and_2() -> None:
    stamp = reader(rtc=NOW_S).now()
    assert tuple(header_time(stamp)) == HEADER_TIME_FIELDS
    assert header_time("odd") == "odd"  # a test's odd clock passes through


def test_records_carry_the_source_and_headers_stay_as_they_were(tmp_path: Path) -> None:
    home = make_station(tmp_path / "station")
    clock = reader(rtc=0, stepped=True)
    with open_journal(tmp_path, home, clock=clock) as journal:
        journal.append({"type": "test", "n": 0})
    (segment,) = sorted((tmp_path / "journal").glob("segment-*.ftj"))
    header = parse_header(memoryview(segment.read_bytes()))
    assert set(header.created) == set(HEADER_TIME_FIELDS)
    import_sources(home, [tmp_path / "journal"])
    store = Store.open(home.database_path)
    try:
        ((body_text, synchronised),) = store.query("SELECT body, clock_synchronised FROM records", ())
    finally:
        store.close()
    time_fields = body_from_json(body_text)["time"]
    assert time_fields["clock_source"] == "sync_stick" and synchronised == 0
