"""An empty device in the station's report (issue 14, item 4): its verdict stays "no match", and the
scan page and the index say "empty (0 files)" beside it: from the kiosk's ``empty`` in the scan
record, or, for a kiosk that does not journal it, from a report that found no regular file."""

from __future__ import annotations

from typing import Any

from station.report import StoredRecord, overview_html, report_context, scan_html
from station.scans import Scan

from .test_report_pages import dom, visible

EMPTY = "empty (0 files)"


def scan_of(files_seen: int, verdict: str = "no_match", **record: Any) -> tuple[Scan, list[StoredRecord]]:
    counts = {"directories": 2, "files_seen": files_seen, "files_read": files_seen, "files_empty": 0}
    body = {
        "type": "scan",
        "bay": "front",
        "device": {"vendor": "Test", "model": "Stick", "serial": "S1"},
        "verdict": verdict,
        "scan": {"verdict": verdict, "counts": counts, "hits": [], "errors": [], "skipped": []},
        **record,
    }
    scan = Scan("k" * 32, f"0.{files_seen}", device=body["device"], verdict=verdict, counts=counts)
    return scan, [StoredRecord(0, files_seen, 10**18, 5, "boot", True, "scan", body)]


def test_the_scan_page_and_the_index_say_empty() -> None:
    scan, records = scan_of(0, empty=True)
    page = dom(scan_html(scan, records, report_context(None, [scan])))
    verdict = page.one(id="verdict")
    assert "no match" in verdict.words() and EMPTY in verdict.words()
    assert page.one(id="verdict-note").words() == EMPTY
    assert page.one(id="checked").facts()["Files seen"] == "0"
    index = visible(dom(overview_html([scan], [], report_context(None, [scan]))))
    assert f"no match {EMPTY}" in index


def test_an_older_record_without_empty_is_read_from_its_counts() -> None:
    scan, records = scan_of(0)  # no "empty" field: a kiosk before this release
    page = dom(scan_html(scan, records, report_context(None, [scan])))
    assert EMPTY in page.one(id="verdict").words()


def test_a_device_with_files_or_an_incomplete_one_is_not_empty() -> None:
    for scan, records in (scan_of(12, empty=False), scan_of(12), scan_of(0, verdict="incomplete")):
        page = dom(scan_html(scan, records, report_context(None, [scan])))
        assert EMPTY not in visible(page) and page.find(id="verdict-note") == []
        assert EMPTY not in visible(dom(overview_html([scan], [], report_context(None, [scan]))))
