"""A kiosk is named by the name it was enrolled with wherever the station shows it: the CSV and JSON
reports, ``report --kiosk NAME``, and ``station review``'s lists (they carried only the id)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.station.review_helpers import Unit, make_unit, station

NAME = "Review test bay 1"  # what review_helpers.enroll calls the kiosk


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    made = make_unit(tmp_path)
    made.journal_scans(("S-0001", made.scan(made.device("S-0001", *made.known, made.benign))))
    made.import_journal()
    return made


def home(unit: Unit) -> list[str]:
    return ["--home", str(unit.home.folder)]


def test_csv_and_json_reports_carry_the_kiosk_name(unit: Unit) -> None:
    status, out, err = station("report", "--format", "csv", *home(unit))
    assert status == 0, err
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["kiosk_name"] == NAME and len(row["kiosk"]) > 8
    status, out, err = station("report", "--format", "json", *home(unit))
    (scan,) = json.loads(out)["scans"]
    assert scan["kiosk_name"] == NAME and scan["kiosk"] == row["kiosk"]


def test_report_selects_a_kiosk_by_its_name_or_its_id(unit: Unit) -> None:
    status, out, err = station("report", "--format", "json", "--kiosk", NAME.upper(), *home(unit))
    assert status == 0 and len(json.loads(out)["scans"]) == 1, err
    status, out, err = station("report", "--format", "json", "--kiosk", "another bay", *home(unit))
    assert (
        status == 2
        and "another bay: no enrolled kiosk has this name or id" in err
        and "\n" not in err.strip()
    )
    kiosk = json.loads(station("report", "--format", "json", *home(unit))[1])["scans"][0]["kiosk"]
    assert (
        len(json.loads(station("report", "--format", "json", "--kiosk", kiosk[:6], *home(unit))[1])["scans"])
        == 1
    )


def test_review_lists_name_the_kiosk(unit: Unit) -> None:
    status, out, err = station("review", "list", *home(unit))
    assert status == 0, err
    assert f" at {NAME}  " in out, out
    status, out, _ = station("review", "list", "--json", *home(unit))
    assert {hit["kiosk_name"] for hit in json.loads(out)} == {NAME}
    scan = json.loads(out)[0]["scan_id"]
    status, _, err = station(
        "review", "set", scan, "0", "--state", "confirmed", "--analyst", "A. Analyst", *home(unit)
    )
    assert status == 0, err
    status, out, _ = station("review", "history", *home(unit))
    assert f"hit 0 ({NAME})" in out, out
