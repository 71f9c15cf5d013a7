"""`make demo` keeps working: the whole demo, run as the Makefile runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_filter_part_runs_anywhere(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--filter-only", "--folder", str(tmp_path / "demo")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "verdict: " in done.stdout and "PRIORITY MATCH" in done.stdout and "(2 files matched)" in done.stdout
    )


def station(demo: Path, *argv: str) -> object:
    """A station command's JSON output, against the demo's station."""
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "station", *argv, "--home", str(demo / "station")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.root
@pytest.mark.udev
@pytest.mark.slow
def test_kiosk_demo_end_to_end(tmp_path: Path) -> None:
    """Provisioning, enrollment, the sync stick out and in, review, the shared filter and the
    exclusion back on the kiosk: the real daemon and station, from the demo's output and files."""
    demo = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--folder", str(demo)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "enrolled kiosk " in out.split("plugging in:")[0], "enrolled before the kiosk's first device"
    verdicts = [
        line.split("verdict: ")[1].split(";")[0]
        for line in out.splitlines()
        if line.startswith("  verdict: ")
    ]
    assert verdicts == [
        "PRIORITY MATCH (red)",
        "NO MATCH (green)",
        "COULD NOT CHECK (amber)",
        "PRIORITY MATCH (red)",  # the phone again, with the shared filter and the exclusion
    ], out
    assert out.count("kiosk shows: SYNC DONE") == 3, out  # journal out; filters in; journal out again
    imports = re.findall(r"(\d+) records imported, (\d+) already imported.*, 0 alarms or warnings", out)
    assert len(imports) == 2, out
    assert imports[0] == ("4", "0"), out  # the filters record and three scans
    assert int(imports[1][0]) >= 2 and imports[1][1] == "4", out  # the second visit, the first not again

    assert "not reviewed -> confirmed by demo analyst" in out
    assert "not reviewed -> false positive (excluded at kiosks) by demo analyst" in out
    assert "shared filter of confirmed finds: confirmed-finds.ftf" in out
    assert "kiosk: took from the stick: filter confirmed-finds.ftf, trust key " in out
    assert "kiosk: filters in use: confirmed finds, demo filter; 1 reviewed false positive(s) excluded" in out
    assert (demo / "kiosk" / "filters" / "confirmed-finds.ftf").exists()
    assert (demo / "kiosk" / "filters" / "exclusions.ftx").exists()
    second_visit = out.split("back at the kiosk")[1]
    shared = "kiosk: hit p1/DCIM/Camera/IMG_20269003.jpg: known to 2 filter(s): confirmed finds, demo filter"
    assert shared in second_visit, second_visit
    excluded_line = "kiosk: not a hit: p1/WhatsApp/Media/WhatsApp Images/IMG-20261101-WA0007.jpg: reviewed as"
    assert excluded_line in second_visit, second_visit

    report = station(demo, "report", "--format", "json")
    assert isinstance(report, dict)
    scans = report["scans"]
    assert [s["verdict"] for s in scans] == ["priority_match", "no_match", "incomplete", "priority_match"]
    again = scans[-1]  # the phone's second scan, as journaled and imported
    assert [Path(h["path"]).name for h in again["hits"]] == ["IMG_20269003.jpg"]
    assert {m["filter_name"] for m in again["hits"][0]["matches"]} == {"confirmed finds", "demo filter"}
    excluded = [s for s in again["skipped"] if s["code"] == "excluded"]
    assert [Path(s["path"]).name for s in excluded] == ["IMG-20261101-WA0007.jpg"]
    reviews = station(demo, "review", "list", "--all", "--json")
    assert isinstance(reviews, list)
    states = {(h["scan_id"], Path(h["path"]).name): h["state"] for h in reviews}
    assert states == {
        (scans[0]["scan_id"], "IMG_20269003.jpg"): "confirmed",
        (scans[0]["scan_id"], "IMG-20261101-WA0007.jpg"): "false_positive",
        (again["scan_id"], "IMG_20269003.jpg"): None,  # the second scan's hit: not reviewed yet
    }
    assert {r["state"] for r in scans[0]["reviews"]} == {"confirmed", "false_positive"}

    pages = demo / "report"
    assert "report for the analyst:" in out and "kiosks page:" in out
    index, kiosks = (pages / "index.html").read_text(), (pages / "kiosks.html").read_text()
    assert "demo kiosk, bay 1" in kiosks and "confirmed finds" in kiosks
    assert len(list(pages.glob("scan-*.html"))) == 4 and "demo kiosk, bay 1" in index
    # the filters as the kiosk journaled them: provider, build date and expiry on the scan page
    second_page = next(
        p.read_text() for p in pages.glob("scan-*.html") if "confirmed-finds.ftf" in p.read_text()
    )
    text = " ".join(re.sub(r"<[^>]+>", " ", second_page).split())
    assert "Provider demo unit" in text and re.search(r"Built 20\d\d-\d\d-\d\dT", text), text[:3000]
    assert re.search(r"Expires 20\d\d-\d\d-\d\dT", text), text[:3000]
