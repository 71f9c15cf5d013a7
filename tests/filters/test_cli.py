"""``fieldtriage filter ...`` end to end: keygen, build from a folder, inspect, verify, lookup."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

from agent.cli import main
from filters.digests import digest_path

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
