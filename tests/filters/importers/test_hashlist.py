from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.common import MAX_LINE_BYTES
from filters.importers.hashlist import read_hash_list

from .synthetic import EMPTY_MD5, EMPTY_SHA1, EMPTY_SHA256, bad_locations, random_digest, read_all


def test_round_trip_md5_and_sha1_with_comments_case_and_whitespace(tmp_path: Path) -> None:
    digests = [random_digest("md5") for _ in range(50)] + [random_digest("sha1") for _ in range(50)]
    random.shuffle(digests)
    lines = ["# synthetic list", ""]
    for index, digest in enumerate(digests):
        text = digest.hex().upper() if index % 2 else digest.hex()
        lines.append(f"  {text}\t" if index % 3 == 0 else text)
        if index % 10 == 0:
            lines.extend(["   ", "  # comment"])
    path = tmp_path / "list.txt"
    path.write_bytes("\r\n".join(lines).encode())

    options = ImportOptions(category="case-7", priority="other")
    entries, report = read_all(path, "list", options)

    kinds = {16: "md5", 20: "sha1"}
    # batches group by kind; within a kind the order of the file is kept
    expected = [DigestEntry(kinds[len(d)], d, "case-7", "other") for d in digests]
    assert entries == sorted(expected, key=lambda e: e.kind)
    assert report.bad_count == 0
    assert report.records[str(path)] == 100
    assert report.accepted == {("md5", "case-7", "other"): 50, ("sha1", "case-7", "other"): 50}


@pytest.mark.parametrize("kind", ["sha256", "blake3", "sample", "md5"])
def test_list_kind_names_the_kind(tmp_path: Path, kind: str) -> None:
    digests = [random_digest(kind) for _ in range(20)]
    path = tmp_path / "list.txt"
    path.write_text("".join(d.hex() + "\n" for d in digests))
    entries, report = read_all(path, "list", ImportOptions(list_kind=kind))
    assert [(e.kind, e.digest) for e in entries] == [(kind, d) for d in digests]
    assert report.bad_count == 0


def test_64_hex_digits_need_list_kind(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(random_digest("md5").hex() + "\n" + random_digest("sha256").hex() + "\n")
    entries, report = read_all(path, "list")
    assert len(entries) == 1
    assert [str(r) for r in report.bad_records] == [
        f"{path}: line 2: 64 hex digits is sha256 or blake3: give --list-kind"
    ]


def test_each_kind_of_bad_line_is_counted_with_its_number(tmp_path: Path) -> None:
    good = random_digest("sha1").hex()
    lines = [
        good,  # 1
        "zz" * 16,  # 2: not hex
        good[:-1],  # 3: odd length
        "ab" * 10 + "cd",  # 4: 22 digits, no such digest
        good + " trailing",  # 5: not one digest
        "",  # 6: blank, fine
    ]
    body = "\n".join(lines).encode() + b"\n\xff\xfe" + b"0" * 30 + b"\n"  # 7: not UTF-8
    body += random_digest("md5").hex().encode() + b"\n"  # 8
    path = tmp_path / "list.txt"
    path.write_bytes(body)

    entries, report = read_all(path, "list")

    assert len(entries) == 2
    assert bad_locations(report) == ["line 2", "line 3", "line 4", "line 5", "line 7"]
    assert report.bad_count == 5
    assert "not a hex digest" in report.bad_records[0].reason
    assert "22 hex digits" in report.bad_records[2].reason
    assert "\\xff" in report.bad_records[4].reason


def test_list_kind_length_mismatch_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(random_digest("sha256").hex() + "\n" + random_digest("md5").hex() + "\n")
    entries, report = read_all(path, "list", ImportOptions(list_kind="sha256"))
    assert len(entries) == 1
    assert str(report.bad_records[0]) == f"{path}: line 2: 32 hex digits, a sha256 digest has 64"


def test_strict_raises_one_line_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(random_digest("md5").hex() + "\n# ok\nnot-a-digest\n")
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "list", ImportOptions(strict=True))
    message = str(raised.value)
    assert message == f"{path}: line 3: not a hex digest: 'not-a-digest'"
    assert "\n" not in message


def test_empty_content_digests_are_left_out(tmp_path: Path) -> None:
    keep = random_digest("md5")
    path = tmp_path / "list.txt"
    path.write_text(f"{EMPTY_MD5}\n{EMPTY_SHA1.upper()}\n{keep.hex()}\n{EMPTY_SHA256}\n")
    entries, report = read_all(path, "list")
    assert [e.digest for e in entries] == [keep]
    assert report.left_out == {"digest of empty content": 2}
    assert bad_locations(report) == ["line 4"]  # 64 digits without --list-kind

    entries, report = read_all(path, "list", ImportOptions(list_kind="sha256"))
    assert report.left_out == {"digest of empty content": 1}


def test_overlong_line_is_bad_and_reading_goes_on(tmp_path: Path) -> None:
    keep = random_digest("sha1")
    path = tmp_path / "list.txt"
    path.write_bytes(b"a" * (3 * MAX_LINE_BYTES) + b"\n" + keep.hex().encode() + b"\n")
    entries, report = read_all(path, "list")
    assert [e.digest for e in entries] == [keep]
    assert bad_locations(report) == ["line 1"]
    assert "longer than" in report.bad_records[0].reason


def test_utf8_bom_before_first_digest(tmp_path: Path) -> None:
    digest = random_digest("md5")
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbf" + digest.hex().encode() + b"\n")
    entries, _ = read_all(path, "list")
    assert [e.digest for e in entries] == [digest]


def test_unknown_list_kind_fails(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(random_digest("md5").hex())
    with pytest.raises(ImportFailed, match="unknown --list-kind 'crc32'"):
        list(read_hash_list(path, ImportOptions(list_kind="crc32"), ImportReport()))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["md5", "sha1"]), st.binary(min_size=20, max_size=20)), max_size=30),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, items: list[tuple[str, bytes]], newline: str, upper: bool
) -> None:
    digests = [(kind, raw[:16] if kind == "md5" else raw) for kind, raw in items]
    path = tmp_path_factory.mktemp("prop") / "list.txt"
    path.write_text("".join((d.hex().upper() if upper else d.hex()) + newline for _, d in digests))
    entries, report = read_all(path, "list")
    expected = [
        (kind, d) for kind, d in digests if d.hex() not in (EMPTY_MD5, EMPTY_SHA1)
    ]  # random bytes hit these only in theory
    assert [(e.kind, e.digest) for e in entries] == sorted(expected, key=lambda item: item[0])
    assert report.bad_count == 0
