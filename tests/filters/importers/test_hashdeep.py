from __future__ import annotations

import os
from pathlib import Path

import pytest

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions

from .synthetic import EMPTY_MD5, EMPTY_SHA256, bad_locations, random_digest, read_all

PREAMBLE = "## Invoked from: /home/synthetic\n## $ hashdeep -r case\n##\n"


def test_round_trip_size_md5_sha256_with_commas_in_names(tmp_path: Path) -> None:
    lines = ["%%%% HASHDEEP-1.0", "%%%% size,md5,sha256,filename", PREAMBLE.rstrip("\n")]
    expected = []
    for index in range(30):
        md5, sha256 = random_digest("md5"), random_digest("sha256")
        name = f"/case/dir, with commas/file{index},v2.jpg" if index % 2 else f"/case/file{index}"
        lines.append(f"{index + 1},{md5.hex()},{sha256.hex()},{name}")
        expected += [
            DigestEntry("md5", md5, "case-1", "other"),
            DigestEntry("sha256", sha256, "case-1", "other"),
        ]
    path = tmp_path / "audit.txt"
    path.write_text("\n".join(lines) + "\n")

    entries, report = read_all(path, "hashdeep", ImportOptions(category="case-1", priority="other"))

    assert entries == expected
    assert report.bad_count == 0


def test_every_column_hashdeep_writes(tmp_path: Path) -> None:
    md5, sha1, sha256 = random_digest("md5"), random_digest("sha1"), random_digest("sha256")
    tiger, whirlpool = os.urandom(24).hex(), os.urandom(64).hex()
    path = tmp_path / "audit.txt"
    path.write_text(
        "%%%% HASHDEEP-1.0\r\n%%%% size,md5,sha1,sha256,tiger,whirlpool,filename\r\n"
        f"99,{md5.hex()},{sha1.hex()},{sha256.hex()},{tiger},{whirlpool},C:\\case\\a.bin\r\n"
    )
    entries, _ = read_all(path, "hashdeep")
    assert [(e.kind, e.digest) for e in entries] == [("md5", md5), ("sha1", sha1), ("sha256", sha256)]


def test_concatenated_files_and_non_utf8_names(tmp_path: Path) -> None:
    first, second = random_digest("md5"), random_digest("sha1")
    body = b"%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n" + f"5,{first.hex()},/x/".encode() + b"\xff\xfe\n"
    body += b"%%%% HASHDEEP-1.0\n%%%% sha1,size,filename\n" + f"{second.hex()},7,/y\n".encode()
    path = tmp_path / "audit.txt"
    path.write_bytes(body)
    entries, report = read_all(path, "hashdeep")
    assert [(e.kind, e.digest) for e in entries] == [("md5", first), ("sha1", second)]
    assert report.bad_count == 0


def test_zero_size_and_empty_content_are_left_out(tmp_path: Path) -> None:
    keep = random_digest("md5")
    path = tmp_path / "audit.txt"
    path.write_text(
        "%%%% HASHDEEP-1.0\n%%%% size,md5,sha256,filename\n"
        f"0,{random_digest('md5').hex()},{random_digest('sha256').hex()},/empty-by-size\n"
        f"3,{EMPTY_MD5},{EMPTY_SHA256},/odd\n"
        f"3,{keep.hex()},{EMPTY_SHA256},/keep\n"
    )
    entries, report = read_all(path, "hashdeep")
    assert [(e.kind, e.digest) for e in entries] == [("md5", keep)]
    assert report.left_out == {"zero-length file": 1, "digest of empty content": 3}


def test_each_kind_of_bad_line_is_counted_with_its_number(tmp_path: Path) -> None:
    md5, sha256 = random_digest("md5").hex(), random_digest("sha256").hex()
    path = tmp_path / "audit.txt"
    path.write_text(
        "\n".join(
            [
                "%%%% HASHDEEP-1.0",  # 1
                "%%%% size,md5,sha256,filename",  # 2
                f"10,{md5},{sha256},/ok",  # 3
                f"10,{md5},{sha256}",  # 4 too few fields
                f"ten,{md5},{sha256},/f",  # 5 size not a number
                f"10,{md5[:-2]},{sha256},/f",  # 6 short md5
                f"10,{md5},{'q' * 64},/f",  # 7 bad sha256
                "",  # 8 blank: skipped
            ]
        )
        + "\n"
    )
    entries, report = read_all(path, "hashdeep")
    assert len(entries) == 2
    assert bad_locations(report) == ["line 4", "line 5", "line 6", "line 7"]
    reasons = [r.reason for r in report.bad_records]
    assert reasons[0] == "3 fields, the column line has 4"
    assert reasons[1] == "size is not a number: 'ten'"
    assert reasons[2].startswith("md5 column: not a md5 digest")
    assert reasons[3].startswith("sha256 column: not a sha256 digest")


def test_strict_raises_one_line_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.txt"
    path.write_text("%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n## c\n1,zz,/f\n")
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "hashdeep", ImportOptions(strict=True))
    assert str(raised.value) == f"{path}: line 4: md5 column: not a md5 digest (32 hex digits): 'zz'"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("%%%% size,md5,filename\n", "line 1: no %%%% HASHDEEP-1.0 header"),
        ("", "line 1: no %%%% HASHDEEP-1.0 header"),
        ("%%%% HASHDEEP-1.0\n## c\n1,abc,/f\n", "line 3: data before the %%%% column line"),
        ("%%%% HASHDEEP-1.0\n%%%% size,tiger,filename\n", "line 2: the column line has no md5"),
    ],
)
def test_files_that_are_not_hashdeep_fail(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "audit.txt"
    path.write_text(body)
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "hashdeep")
    assert str(raised.value).startswith(f"{path}: {reason}")
