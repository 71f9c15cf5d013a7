"""``fieldtriage filter ...`` end to end: keygen, build from a folder, inspect, verify, lookup."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from agent.cli import build_parser, main
from filters.builder import FilterBuilder
from filters.cli import parse_date, parse_expires
from filters.container import SECONDS_PER_DAY, expiry_of, write_filter
from filters.digests import digest_path
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key
from filters.model import iso_time

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A folder of 30 random files (and an empty one), a key, and a filter built from the folder."""
    known = tmp_path / "known"
    (known / "sub").mkdir(parents=True)
    for number in range(30):
        folder = known / "sub" if number % 3 else known
        (folder / f"item{number}.bin").write_bytes(os.urandom(100 + number * 7919))
    (known / "empty.bin").write_bytes(b"")
    assert main(["filter", "keygen", str(tmp_path / "lab")]) == 0
    out = tmp_path / "known.ftf"
    status = main(
        [
            "filter",
            "build",
            "--key",
            str(tmp_path / "lab.key"),
            "--name",
            "cli test",
            "-o",
            str(out),
            str(known),
        ]
    )
    assert status == 0
    return known, tmp_path / "lab.pub", out


def lookup(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]]]:
    capsys.readouterr()
    status = main(["filter", "lookup", *args])
    return status, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_file_is_found_by_file_and_by_each_digest(
    built: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    known, public, out = built
    files = sorted(p for p in known.rglob("*.bin") if p.stat().st_size)
    args = ["--trust", str(public), str(out)]
    status, results = lookup(capsys, *args, *[a for p in files for a in ("--file", str(p))])
    assert status == 0
    assert len(results) == len(files)
    assert all(r["matched"] and r["priority"] for r in results)
    for path in files:
        content = path.read_bytes()
        sample = digest_path(path, ["sample"])["sample"].hex()
        for query in (f"blake3:{blake3.blake3(content).hexdigest()}", f"sample:{sample}"):
            status, (result,) = lookup(capsys, *args, "--digest", query)
            assert status == 0 and result["matched"], query


def test_non_members_and_digest_streams(
    built: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    known, public, out = built
    args = ["--trust", str(public), str(out)]
    status, (result,) = lookup(capsys, *args, "--digest", "blake3:" + "ab" * 32)
    assert status == 1 and result == {
        "query": "blake3:" + "ab" * 32,
        "matched": False,
        "priority": False,
        "sets": [],
    }
    member = blake3.blake3((known / "item0.bin").read_bytes()).hexdigest()
    queries = tmp_path / "queries.txt"
    queries.write_text(
        "# comment\n"
        + "\n".join(f"blake3:{os.urandom(32).hex()}" for _ in range(500))
        + f"\nblake3:{member}\n"
    )
    status, results = lookup(capsys, *args, "--digests-from", str(queries))
    assert status == 0
    assert [r["matched"] for r in results] == [False] * 500 + [True]
    assert results[-1]["sets"] == [{"set": 0, "kind": "blake3", "category": "known", "priority": "priority"}]
    # md5 is not in this filter: looked up, never matched
    status, (result,) = lookup(capsys, *args, "--digest", "md5:" + hashlib.md5(b"x").hexdigest())
    assert status == 1


def test_bad_query_line_is_an_error_with_its_line(
    built: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, public, out = built
    queries = tmp_path / "q.txt"
    queries.write_text("blake3:" + "00" * 32 + "\nmd5:zz\n")
    capsys.readouterr()
    assert main(["filter", "lookup", "--trust", str(public), str(out), "--digests-from", str(queries)]) == 2
    err = capsys.readouterr().err
    assert "q.txt: line 2: 'zz' is not hex" in err


def test_inspect_and_verify(
    built: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, public, out = built
    capsys.readouterr()
    assert main(["filter", "inspect", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "cli test"
    assert [(s["kind"], s["count"]) for s in info["sets"]] == [("blake3", 30), ("sample", 30)]
    assert info["sample_covers"] == {"0": 1}
    assert info["signature"].startswith("not checked")
    assert main(["filter", "verify", "--trust", str(public), str(out)]) == 0
    main(["filter", "keygen", str(tmp_path / "other")])
    capsys.readouterr()
    assert main(["filter", "verify", "--trust", str(tmp_path / "other.pub"), str(out)]) == 1
    assert "is not in the trust store" in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ftf"
    garbage.write_bytes(b"\x00garbage")
    runs = [
        ["filter", "inspect", str(garbage)],
        [
            "filter",
            "build",
            "--key",
            str(tmp_path / "none.key"),
            "--name",
            "n",
            "-o",
            str(tmp_path / "o"),
            str(tmp_path),
        ],
        ["filter", "lookup", "--trust", str(tmp_path), str(garbage), "--digest", "md5:00"],
    ]
    for args in runs:
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("fieldtriage: ")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints (exit 2, no traceback), without its prefix."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("fieldtriage: ")
    return done.stderr.removeprefix("fieldtriage: ").rstrip("\n")


@pytest.fixture
def build_args(tmp_path: Path) -> list[str]:
    """``filter build`` with a fresh key, named "case 12", writing out.ftf; inputs to be added."""
    assert main(["filter", "keygen", str(tmp_path / "lab")]) == 0
    key = str(tmp_path / "lab.key")
    return ["filter", "build", "--key", key, "--name", "case 12", "-o", str(tmp_path / "out.ftf")]


def icse_csv(tmp_path: Path) -> Path:
    csv = tmp_path / "icse.csv"
    csv.write_text("MD5;SHA1\n6463f91837140767ffd886f0aec896aa;\n")
    return csv


# Issue 14, item 7: each of these named the wrong thing or gave a library's message.


def test_build_from_an_empty_folder_names_the_folder(build_args: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "known"
    empty.mkdir()
    line = one_error_line(run_cli(*build_args, str(empty)))
    assert line == f"{empty}: holds no file (the folder is empty): nothing to build a filter from"
    assert "case 12" not in line  # the filter's name, which is what it used to say
    (empty / "blank.jpg").write_bytes(b"")
    line = one_error_line(run_cli(*build_args, str(empty)))
    assert line == f"{empty}: no digests to build a filter from (left out: 1 zero-length file)"


def test_a_csv_forced_as_vics_is_not_json(build_args: list[str], tmp_path: Path) -> None:
    csv = icse_csv(tmp_path)
    line = one_error_line(run_cli(*build_args, "--format", "vics", str(csv)))
    assert line == f"{csv}: not JSON (it begins 'MD5;SHA1'): not a VICS JSON file"


def test_build_refuses_an_expiry_already_past(build_args: list[str], tmp_path: Path) -> None:
    csv = icse_csv(tmp_path)
    line = one_error_line(run_cli(*build_args, "--expires", "2020-01-01", str(csv)))
    assert line.startswith(
        "--expires: the end of 2020-01-01 UTC (2020-01-02T00:00:00Z) is already past; now is "
    )
    assert line.endswith(": give a later date")
    line = one_error_line(run_cli(*build_args, "--expires", "2020-01-01T12:00:00+02:00", str(csv)))
    assert line.startswith("--expires: 2020-01-01T10:00:00Z is already past")
    noon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat() + "T12:00:00"
    line = one_error_line(run_cli(*build_args, "--not-before", noon, "--expires", noon, str(csv)))
    assert line == f"--expires: {noon}Z is not after --not-before {noon}Z"
    assert not (tmp_path / "out.ftf").exists(), "nothing was written by a refused build"


def test_a_private_key_given_as_trust_is_named(build_args: list[str], tmp_path: Path) -> None:
    assert run_cli(*build_args, str(icse_csv(tmp_path))).returncode == 0
    key = tmp_path / "lab.key"
    line = one_error_line(run_cli("filter", "verify", "--trust", str(key), str(tmp_path / "out.ftf")))
    assert line == (
        f"{key}: a private key, not an Ed25519 public key: give its public key (lab.pub) instead, "
        "and keep this file offline"
    )


def test_a_bare_expiry_date_is_the_end_of_that_day_utc() -> None:
    assert parse_expires("2026-06-30") == int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp())
    assert parse_expires("2026-06-30T18:00") == int(dt.datetime(2026, 6, 30, 18, tzinfo=dt.UTC).timestamp())
    assert parse_expires("2026-06-30T00:00:00+00:00") == int(
        dt.datetime(2026, 6, 30, tzinfo=dt.UTC).timestamp()
    ), "a time is taken as given, even midnight"
    assert parse_date("2026-06-30") == int(dt.datetime(2026, 6, 30, tzinfo=dt.UTC).timestamp())


def test_build_stores_the_end_of_the_expiry_day(
    built: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known, _, _ = built
    last_day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).date()
    out = tmp_path / "dated.ftf"
    args = ["filter", "build", "--key", str(tmp_path / "lab.key"), "--name", "dated", "-o", str(out)]
    assert main([*args, "--expires", last_day.isoformat(), str(known)]) == 0
    capsys.readouterr()
    assert main(["filter", "inspect", "--json", str(out)]) == 0
    after = last_day + dt.timedelta(days=1)
    assert json.loads(capsys.readouterr().out)["expires"] == f"{after.isoformat()}T00:00:00Z"


def dated_filter(tmp_path: Path, key: Path, name: str, expires: int | None) -> Path:
    builder = FilterBuilder(name=name, expires=expires)
    builder.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    path = tmp_path / f"{name}.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(key))
    return path


def test_verify_warns_ahead_of_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14, item 9: "valid" two days before the expiry, and no date; now the date, and a
    warning line within --warn-days (default 14); still exit 0 (the filter is valid)."""
    key, public = generate_key_pair(tmp_path / "lab")
    now = int(time.time())
    soon = dated_filter(tmp_path, key, "soon", now + 2 * SECONDS_PER_DAY + 3600)
    later = dated_filter(tmp_path, key, "later", now + 30 * SECONDS_PER_DAY + 3600)
    never = dated_filter(tmp_path, key, "never", None)
    date_of = {p: iso_time(now + days * SECONDS_PER_DAY + 3600) for p, days in ((soon, 2), (later, 30))}

    def verify(path: Path, *extra: str) -> list[str]:
        capsys.readouterr()
        assert main(["filter", "verify", "--trust", str(public), *extra, str(path)]) == 0
        return capsys.readouterr().out.splitlines()

    valid, warning = verify(soon)
    assert valid.startswith(f"valid: {soon} (soon, 1 entries, signer ") and valid.endswith(
        f", expires {date_of[soon]})"
    )
    assert (
        warning == f"warning: {soon} expires in 2 days ({date_of[soon]}): deliver a newer filter before then"
    )
    (valid,) = verify(later)
    assert valid.endswith(f", expires {date_of[later]})")
    (valid, warning) = verify(later, "--warn-days", "31")
    assert warning.startswith(f"warning: {later} expires in 30 days ({date_of[later]})")
    (valid,) = verify(soon, "--warn-days", "0")
    (valid,) = verify(never)
    assert valid.endswith(", never expires)")


def test_expiry_days_and_warning_boundaries() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    stamp = int(now.timestamp())

    def expiry(seconds_left: int, warning_days: int = 14) -> tuple[int, bool, str]:
        metadata = FilterBuilder(name="x", expires=stamp + seconds_left)
        metadata.add(DigestEntry("md5", bytes(16), "known", "priority"))
        found = expiry_of(metadata.build_unsigned().metadata, now, warning_days)
        assert found is not None
        return found.days_left, found.soon, found.warning()

    assert expiry(14 * SECONDS_PER_DAY)[:2] == (14, False), "14 whole days left: not yet"
    assert expiry(14 * SECONDS_PER_DAY - 1)[:2] == (13, True)
    assert expiry(SECONDS_PER_DAY + 5)[2] == "expires in 1 day (2026-06-02T00:00:05Z)"
    assert expiry(60)[2] == "expires in less than a day (2026-06-01T00:01:00Z)"
    assert expiry(60, warning_days=0)[1] is False, "0: never warn"


def test_every_option_the_inputs_doc_names_exists() -> None:
    """docs/filter-inputs.md named --digest and --priority; the options are --digests and
    --priority-class. Every --option the page names must be one of filter build's."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    filter_commands = next(
        a for a in commands.choices["filter"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    options = set(filter_commands.choices["build"]._option_string_actions)
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", (REPO / "docs" / "filter-inputs.md").read_text()))
    assert named, "the page names options"
    assert named <= options, f"not options of filter build: {sorted(named - options)}"
