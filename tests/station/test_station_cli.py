from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from agent.journal.records import filters_record, lights_record, scan_finished_record, scan_started_record
from agent.journal.sync_token import TOKEN_NAME
from station import cli as station_cli
from station.home import StationHome
from tests.agent.journal.helpers import open_journal, run_cli

HOSTILE = "/DCIM/<script>alert(1)</script>\x1b[31m.jpg"


def station(*argv: str) -> tuple[int, str, str]:
    return run_cli(station_cli.register, ["station", *argv])


def synthetic_report(path: str) -> dict[str, object]:
    return {
        "verdict": "priority_match",
        "mode": "thorough",
        "hits": [
            {
                "path": path,
                "size": 1234,
                "priority": True,
                "confirmed": True,
                "categories": ["vics-1"],
                "matches": [
                    {
                        "filter_id": "f1",
                        "filter_name": "demo",
                        "set": 0,
                        "kind": "md5",
                        "category": "vics-1",
                        "priority": "priority",
                        "digest": "ab" * 16,
                    }
                ],
                "digests": {"md5": "ab" * 16, "sha1": "cd" * 20},
            }
        ],
        "errors": [{"path": "/broken", "code": "EIO", "reason": "Input/output error"}],
        "skipped": [{"path": "=cmd|' /C calc'!A0", "code": "symlink", "reason": "symbolic link"}],
        "filters": [{"filter_id": "f1"}],
    }


def daemon_scan_record() -> dict[str, object]:
    """The one-record shape agent/daemon/bay.py journals."""
    return {
        "type": "scan",
        "bay": "left",
        "device": {"vendor": "Daemon", "model": "Disk", "serial": "D-0002"},
        "filters": [{"id": "f2", "name": "second filter", "signer": "00" * 16}],
        "mode": "quick",
        "started": "2025-06-01T10:00:00.000000Z",
        "finished": "2025-06-01T10:05:00.000000Z",
        "verdict": "match",
        "lights_shown": ["scanning", "amber"],
        "device_problems": ["partition 2: unknown filesystem"],
        "scan": synthetic_report("/p1/other.jpg"),
    }


@pytest.fixture()
def imported(tmp_path: Path) -> Path:
    home = tmp_path / "station"
    status, out, _ = station("init", "--home", str(home))
    assert status == 0 and "BEGIN PUBLIC KEY" in out
    device = {"vendor": "Synthetic", "model": "Stick", "serial": "S-0001", "devnode": "/dev/sdx"}
    with open_journal(tmp_path, StationHome(home)) as journal:
        journal.append(filters_record([{"filter_id": "f1", "name": "demo filter"}]))
        journal.append(scan_started_record("scan-1", device, ["f1"], "thorough"))
        journal.append(lights_record("busy", "scan-1"))
        journal.append(scan_finished_record("scan-1", synthetic_report(HOSTILE), ["busy", "red"]))
        journal.append(scan_started_record("scan-2", {"model": "Other"}, ["f1"], "quick"))  # interrupted
        journal.append(daemon_scan_record())
    status, out, _ = station("import", "--home", str(home), str(tmp_path / "journal"))
    assert status == 0, out
    return home


def test_init_twice_is_refused(imported: Path) -> None:
    status, _, err = station("init", "--home", str(imported))
    assert status == 2 and err.count("\n") == 1 and "already exists" in err


def test_import_reports_problems_with_exit_1(imported: Path, tmp_path: Path) -> None:
    segment = tmp_path / "journal" / "segment-00000000.ftj"
    data = bytearray(segment.read_bytes())
    data[-10] ^= 0xFF
    altered = tmp_path / "altered" / "segment-00000000.ftj"
    altered.parent.mkdir()
    altered.write_bytes(bytes(data))
    status, out, _ = station("import", "--home", str(imported), str(altered))
    assert status == 1 and "alarm: kiosk" in out and "seal" in out


def test_missing_key_wrong_key_corrupt_database_are_one_line_errors(imported: Path, tmp_path: Path) -> None:
    status, _, err = station("import", "--home", str(tmp_path / "nowhere"), str(tmp_path / "journal"))
    assert status == 2 and err.count("\n") == 1 and "run 'fieldtriage station init'" in err
    (imported / "journal.key").chmod(0o600)
    (imported / "journal.key").write_bytes((imported / "signing.key").read_bytes())
    status, _, err = station("import", "--home", str(imported), str(tmp_path / "journal"))
    assert status == 2 and err.count("\n") == 1 and "not an X25519 private key" in err
    (imported / "station.sqlite").write_bytes(b"this is not sqlite" * 100)
    for command in (["report", "--format", "json"], ["kiosks"]):
        status, _, err = station(*command, "--home", str(imported))
        assert status == 2 and err.count("\n") == 1 and "not a usable station database" in err


def test_html_report_escapes_hostile_paths(imported: Path, tmp_path: Path) -> None:
    status, _, _ = station("report", "--home", str(imported), "--output", str(tmp_path / "html"))
    assert status == 0
    pages = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "html").iterdir()}
    assert len(pages) == 5  # the scan list, the kiosk overview and one page per scan
    text = "".join(pages.values())
    assert "<script>" not in text and "\x1b" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m.jpg" in text
    assert "ab" * 16 in text and "Input/output error" in text and "interrupted" in text


def test_csv_and_json_reports(imported: Path) -> None:
    status, out, _ = station("report", "--home", str(imported), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    by_device = {r["device"]: r for r in rows}
    assert status == 0 and len(rows) == 3
    synthetic, daemon = by_device["Synthetic Stick (serial S-0001)"], by_device["Daemon Disk (serial D-0002)"]
    assert synthetic["verdict"] == "priority_match" and synthetic["lights"] == "busy > busy > red"
    assert daemon["verdict"] == "match" and daemon["started"] == "2025-06-01T10:00:00Z"
    assert daemon["errors"] == "2" and daemon["lights"] == "scanning > amber"
    assert by_device["Other"]["verdict"] == "interrupted"
    status, out, _ = station("report", "--home", str(imported), "--format", "json", "--device", "s-0001")
    document = json.loads(out)
    [scan] = document["scans"]
    assert scan["hits"][0]["path"] == HOSTILE and scan["skipped"][0]["code"] == "symlink"
    status, out, _ = station("report", "--home", str(imported), "--format", "json", "--since", "2999-01-01")
    assert json.loads(out)["scans"] == []


def test_export_vics(imported: Path) -> None:
    status, out, _ = station("export-vics", "--home", str(imported), "scan-1", "--case-number", "SYN-1")
    case = json.loads(out)
    assert status == 0
    assert case["@odata.context"].endswith("/DataModels/2.0.xml/US/$metadata#Media")
    assert case["CaseNumber"] == "SYN-1" and case["SourceApplicationName"] == "fieldtriage"
    [media] = case["value"]
    assert media["MD5"] == "AB" * 16 and media["SHA1"] == "CD" * 20 and media["Category"] == 1
    assert media["MediaSize"] == 1234
    media_file = media["MediaFiles"][0]
    assert media_file["FilePath"] + media_file["FileName"] == HOSTILE and media_file["MD5"] == "AB" * 16
    status, _, err = station("export-vics", "--home", str(imported), "no-such-scan")
    assert status == 2 and "no such scan" in err


def test_kiosks_lists_sync_time_and_filters(imported: Path) -> None:
    status, out, _ = station("kiosks", "--home", str(imported))
    assert status == 0 and "filters: second filter (f2)" in out and "6 records" in out
    status, out, _ = station("kiosks", "--home", str(imported), "--json")
    [kiosk] = json.loads(out)["kiosks"]
    assert kiosk["last_import"] and kiosk["filters"][0]["id"] == "f2"


def test_prepare_stick(imported: Path, tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    status, out, _ = station("prepare-stick", "--home", str(imported), str(stick), "--uuid", "AAAA-0001")
    assert status == 0 and "filesystem aaaa-0001" in out and (stick / TOKEN_NAME).exists()
    status, _, err = station("prepare-stick", "--home", str(imported), str(tmp_path / "missing"))
    assert status == 2 and err.count("\n") == 1
