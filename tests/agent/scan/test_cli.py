"""cli: exit statuses 0/1/2/3, JSON and human output, one-line errors (through register())."""

from __future__ import annotations

import argparse
import errno
import functools
import json
import sys
from pathlib import Path

import pytest

from agent.scan import Scanner
from agent.scan import cli as scan_cli
from agent.scan.cli import register
from agent.scan.reader import open_regular
from filters.errors import FieldtriageError

from .conftest import FilterFactory, write_random


def run(argv: list[str]) -> int:
    """What ``fieldtriage`` main does with a handler's result and errors."""
    parser = argparse.ArgumentParser(prog="fieldtriage")
    register(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        status: int = args.handler(args)
    except FieldtriageError as err:
        print(f"fieldtriage: {err}", file=sys.stderr)
        return 2
    return status


@pytest.fixture
def setup(tmp_path: Path, filters: FilterFactory) -> tuple[Path, Path, Path]:
    root = tmp_path / "device"
    known = write_random(root / "DCIM" / "k.jpg", 80_000, 1)
    write_random(root / "notes.txt", 500, 2)
    return root, known, filters.path([known])


def test_exit_1_on_a_match_with_json_report(
    setup: tuple[Path, Path, Path], filters: FilterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root, known, ftf = setup
    status = run(["scan", "--filter", str(ftf), "--trust", str(filters.pub_path), "--json", str(root)])
    document = json.loads(capsys.readouterr().out)
    assert status == 1 and document["verdict"] == "priority_match"
    assert document["hits"][0]["path"] == str(known) and document["counts"]["files_seen"] == 2


def test_exit_0_when_nothing_matches_and_1_for_other_sets(
    setup: tuple[Path, Path, Path], filters: FilterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root, known, _ = setup
    unrelated = filters.path([write_random(root.parent / "x", 100, 9)])
    trust = str(filters.folder)  # a folder of keys
    assert run(["scan", "--filter", str(unrelated), "--trust", trust, str(root)]) == 0
    assert "NO MATCH" in capsys.readouterr().out
    other = filters.path([known], priority="other")
    assert run(["scan", "--filter", str(unrelated), "--filter", str(other), "--trust", trust, str(root)]) == 1
    assert "MATCH (other sets only)" in capsys.readouterr().out


def test_exit_2_for_a_missing_root_and_0_for_a_symlink_root(
    setup: tuple[Path, Path, Path], filters: FilterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, _ = setup
    unrelated = filters.path([write_random(root.parent / "x", 100, 9)])
    missing = root / "not-there"
    status = run(
        ["scan", "--filter", str(unrelated), "--trust", str(filters.pub_path), str(root), str(missing)]
    )
    assert status == 2  # a root that does not exist is a usage error...
    assert capsys.readouterr().err.strip() == f"fieldtriage: {missing}: no such file or folder to scan"
    (root / "dangling").symlink_to(root / "nowhere")
    status = run(
        ["scan", "--filter", str(unrelated), "--trust", str(filters.pub_path), str(root / "dangling")]
    )
    assert status == 0  # ...a root that is a symlink is skipped, not followed


def test_exit_3_when_a_file_cannot_be_read(
    setup: tuple[Path, Path, Path],
    filters: FilterFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, _, _ = setup
    unrelated = filters.path([write_random(root.parent / "x", 100, 9)])

    def opener(dir_fd: int, name: bytes) -> tuple[int, int]:
        if name == b"notes.txt":  # tests run as root, which permission bits do not stop
            raise PermissionError(errno.EACCES, "Permission denied")
        return open_regular(dir_fd, name)

    monkeypatch.setattr(scan_cli, "Scanner", functools.partial(Scanner, opener=opener))
    status = run(["scan", "--filter", str(unrelated), "--trust", str(filters.pub_path), str(root)])
    out = capsys.readouterr().out
    assert status == 3
    assert "INCOMPLETE" in out and f"{root}/notes.txt: cannot open: Permission denied" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--filter", "{missing}", "--trust", "{pub}"], "{missing}: cannot read: No such file or directory"),
        (["--filter", "{garbage}", "--trust", "{pub}"], "{garbage}: not a filter file"),
        (["--filter", "{ftf}", "--trust", "{nokey}"], "{nokey}: no such trust key file or folder"),
        (["--filter", "{ftf}", "--trust", "{pub}", "--workers", "0"], "--workers: must be between 1 and 64"),
        (
            ["--filter", "{ftf}", "--trust", "{pub}", "--mode", "quick"],
            "--mode: quick mode needs a sample set",
        ),
    ],
)
def test_exit_2_with_one_line_errors(
    tmp_path: Path, filters: FilterFactory, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    names = {
        "missing": str(tmp_path / "missing.ftf"),
        "garbage": str(write_random(tmp_path / "garbage.ftf", 100, 3)),
        "nokey": str(tmp_path / "nokey.pub"),
        "pub": str(filters.pub_path),
        "ftf": str(filters.path([write_random(tmp_path / "k", 10, 1)], ("md5",))),
    }
    status = run(["scan", *[a.format(**names) for a in argv], str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("fieldtriage: " + expected.format(**names)) and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["scan", "--mode", "fast", "x"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_descriptors_running_out_on_a_deep_tree_is_reported_not_a_traceback(
    tmp_path: Path, filters: FilterFactory
) -> None:
    """A tree deeper than the descriptors left (the walk holds each folder open), with reader
    processes wanted: the folders that cannot be opened are named, the hit is still found."""
    import resource
    import subprocess

    root = tmp_path / "device"
    known = write_random(root / "DCIM" / "k.jpg", 80_000, 1)
    deep = root
    for level in range(80):
        deep = deep / f"d{level}"
        write_random(deep / "f.bin", 2000, level)
    fieldtriage = Path(sys.executable).with_name("fieldtriage")
    command = [str(fieldtriage), "scan", "--mode", "full", "--workers", "2", "--json"]
    command += ["--filter", str(filters.path([known], ("md5",))), "--trust", str(filters.pub_path), str(root)]

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, preexec_fn=few_descriptors)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "priority_match" and not report["complete"]
    assert "EMFILE" in report["counts"]["errors"], report["counts"]
