"""`make demo` keeps working: the whole demo, run as the Makefile runs it."""

from __future__ import annotations

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


@pytest.mark.root
@pytest.mark.udev
@pytest.mark.slow
def test_kiosk_demo_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "demo", "--folder", str(tmp_path / "demo")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    verdicts = [
        line.split("verdict: ")[1].split(";")[0] for line in out.splitlines() if "  verdict: " in line
    ]
    assert verdicts == ["PRIORITY MATCH (red)", "NO MATCH (green)", "COULD NOT CHECK (amber)"], out
    assert re.search(r"\b4 records imported", out), out  # the filters record and three scans
    assert "report for the analyst:" in out
    assert (tmp_path / "demo" / "report" / "index.html").exists()
