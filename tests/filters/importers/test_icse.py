from __future__ import annotations

from pathlib import Path

import pytest

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions

from .synthetic import EMPTY_MD5, EMPTY_SHA1, bad_locations, random_digest, read_all

HEADER = "MD5;SHA1;PhotoDNA;Image ID;Is distributed;Victim identified;Offender identified;Series name;Notes"


def icse_row(md5: str, sha1: str, series: str = "synthetic series", image_id: int = 1) -> str:
    return f"{md5};{sha1};;{image_id};1;0;0;{series};"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_round_trip_with_bom_quotes_and_missing_digests(tmp_path: Path, newline: str) -> None:
    expected = []
    rows = [HEADER]
    for index in range(40):
        md5, sha1 = random_digest("md5"), random_digest("sha1")
        md5_text = "" if index % 7 == 3 else md5.hex().upper()
        sha1_text = "" if index % 5 == 2 and md5_text else sha1.hex()
        series = '"a; quoted ""series"""' if index % 4 == 0 else "plain"
        rows.append(icse_row(md5_text, sha1_text, series, index))
        expected += [DigestEntry("md5", md5, "icse", "other")] if md5_text else []
        expected += [DigestEntry("sha1", sha1, "icse", "other")] if sha1_text else []
    path = tmp_path / "icse.csv"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join(rows).encode() + newline.encode())

    entries, report = read_all(path, "icse", ImportOptions(category="ignored", priority="other"))

    assert entries == expected
    assert report.bad_count == 0
    assert report.accepted[("md5", "icse", "other")] == sum(e.kind == "md5" for e in expected)


def test_columns_are_found_by_name_in_any_case_and_order(tmp_path: Path) -> None:
    md5, sha1 = random_digest("md5"), random_digest("sha1")
    path = tmp_path / "icse.csv"
    path.write_text(f"Image ID;sha1;Series name;md5\n7;{sha1.hex()};s;{md5.hex()}\n")
    entries, _ = read_all(path, "icse")
    assert [(e.kind, e.digest) for e in entries] == [("sha1", sha1), ("md5", md5)]


def test_each_kind_of_bad_row_is_counted_with_its_line(tmp_path: Path) -> None:
    md5, sha1 = random_digest("md5").hex(), random_digest("sha1").hex()
    body = "\n".join(
        [
            HEADER,  # 1
            icse_row(md5, sha1),  # 2 fine
            icse_row("", ""),  # 3 no digest
            icse_row("12345", sha1),  # 4 malformed MD5
            icse_row(md5, "x" * 40),  # 5 malformed SHA1
            md5,  # 6 too few fields
            "",  # 7 blank: skipped
            ";;;;",  # 8 empty fields: skipped
        ]
    ).encode()
    body += b"\n" + icse_row(md5, sha1, "s\xe9rie").encode("latin-1") + b"\n"  # 9 not UTF-8
    body += icse_row(md5, "").encode() + b"\n"  # 10 fine
    path = tmp_path / "icse.csv"
    path.write_bytes(body)

    entries, report = read_all(path, "icse")

    assert len(entries) == 3
    assert bad_locations(report) == ["line 3", "line 4", "line 5", "line 6", "line 9"]
    reasons = [r.reason for r in report.bad_records]
    assert reasons[0] == "no digest: MD5 and SHA1 are empty"
    assert reasons[1].startswith("MD5: not a md5 digest (32 hex digits): '12345'")
    assert reasons[2].startswith("SHA1: not a sha1 digest")
    assert reasons[3] == "1 fields, no SHA1 column"
    assert reasons[4].startswith("not UTF-8")


def test_strict_raises_one_line_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "icse.csv"
    path.write_text(f"{HEADER}\n{icse_row(random_digest('md5').hex(), '')}\n{icse_row('', 'nope')}\n")
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "icse", ImportOptions(strict=True))
    assert str(raised.value) == f"{path}: line 3: SHA1: not a sha1 digest (40 hex digits): 'nope'"


def test_missing_header_fails(tmp_path: Path) -> None:
    path = tmp_path / "icse.csv"
    path.write_text(icse_row(random_digest("md5").hex(), random_digest("sha1").hex()) + "\n")
    with pytest.raises(ImportFailed, match="no MD5 or SHA1 column in the header"):
        read_all(path, "icse")


def test_empty_content_digests_are_left_out(tmp_path: Path) -> None:
    keep = random_digest("sha1")
    path = tmp_path / "icse.csv"
    path.write_text(f"{HEADER}\n{icse_row(EMPTY_MD5, keep.hex())}\n{icse_row(EMPTY_MD5, EMPTY_SHA1)}\n")
    entries, report = read_all(path, "icse")
    assert [(e.kind, e.digest) for e in entries] == [("sha1", keep)]
    assert report.left_out == {"digest of empty content": 3}
    assert report.bad_count == 0
