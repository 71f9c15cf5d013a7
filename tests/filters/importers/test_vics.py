from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.vics import read_vics

from .synthetic import (
    EMPTY_BLAKE3,
    EMPTY_MD5,
    EMPTY_SHA1,
    EMPTY_SHA256,
    bad_locations,
    random_digest,
    read_all,
)

REPO = Path(__file__).resolve().parents[3]
CONTEXT_2_0 = "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/$metadata#Media"
METADATA_1_3 = "http://github.com/ICMEC/ProjectVic/DataModels/1.3.xml/US/$metadata#Media"


def write_vics(path: Path, records: list[Any], version: str = "2.0") -> Path:
    root_key, root_value = (
        ("@odata.context", CONTEXT_2_0) if version == "2.0" else ("odata.metadata", METADATA_1_3)
    )
    path.write_text(json.dumps({root_key: root_value, "value": records}, indent=1))
    return path


def synthetic_record(media_id: int, category: Any, **digests: Any) -> dict[str, Any]:
    record = {"MediaID": media_id, "Category": category, "MediaSize": 1234, "IsPrecategorized": False}
    record.update(digests)
    return record


@pytest.mark.parametrize("version", ["1.3", "2.0"])
def test_round_trip_with_category_mapping(tmp_path: Path, version: str) -> None:
    expected: list[DigestEntry] = []
    records = []
    for media_id in range(60):
        category = media_id % 5  # 0..4
        md5, sha1 = random_digest("md5"), random_digest("sha1")
        written_category: Any = str(category) if media_id % 2 else category
        records.append(synthetic_record(media_id, written_category, MD5=md5.hex(), SHA1=sha1.hex().upper()))
        priority = {1: "priority", 2: "priority", 3: "other"}.get(category)
        if priority is not None:
            expected += [
                DigestEntry("md5", md5, f"vics-{category}", priority),  # type: ignore[arg-type]
                DigestEntry("sha1", sha1, f"vics-{category}", priority),  # type: ignore[arg-type]
            ]
    path = write_vics(tmp_path / "case.json", records, version)

    entries, report = read_all(path, "vics")

    assert entries == expected
    assert report.left_out == {"VICS category 0": 12, "VICS category 4": 12}
    assert report.bad_count == 0
    assert report.accepted[("md5", "vics-3", "other")] == 12


def test_category_sets_come_from_the_options(tmp_path: Path) -> None:
    records = [synthetic_record(i, i, MD5=random_digest("md5").hex()) for i in range(5)]
    path = write_vics(tmp_path / "case.json", records)
    options = ImportOptions(
        vics_priority_categories=frozenset({"4"}), vics_other_categories=frozenset({"0", "1"})
    )
    entries, report = read_all(path, "vics", options)
    assert [(e.category, e.priority) for e in entries] == [
        ("vics-0", "other"),
        ("vics-1", "other"),
        ("vics-4", "priority"),
    ]
    assert report.left_out == {"VICS category 2": 1, "VICS category 3": 1}


def test_alternative_hashes_media_files_and_duplicates(tmp_path: Path) -> None:
    md5, sha1, sha256, b3, file_md5, file_sha1 = (
        random_digest(k) for k in ("md5", "sha1", "sha256", "blake3", "md5", "sha1")
    )
    record = synthetic_record(
        1,
        1,
        MD5=md5.hex(),
        SHA1=sha1.hex(),
        AlternativeHashes=[
            {"HashName": "PhotoDNA", "HashValue": "not hex at all, ignored"},
            {"HashName": "PDQ", "HashValue": os.urandom(32).hex()},
            {"HashName": "SHA-256", "HashValue": sha256.hex()},
            {"HashName": "BLAKE3", "HashValue": b3.hex()},
            {"HashName": "md5", "HashValue": md5.hex().upper()},  # duplicate of MD5
        ],
        MediaFiles=[
            {"MD5": file_md5.hex(), "SHA1": file_sha1.hex(), "FileName": "synthetic.jpg"},
            {"MD5": md5.hex(), "FilePath": "dir"},  # duplicate again
        ],
    )
    path = write_vics(tmp_path / "case.json", [record])
    entries, _ = read_all(path, "vics")
    assert [(e.kind, e.digest) for e in entries] == [
        ("md5", md5),
        ("sha1", sha1),
        ("sha256", sha256),
        ("blake3", b3),
        ("md5", file_md5),
        ("sha1", file_sha1),
    ]


def test_each_kind_of_bad_record_is_counted_with_its_number(tmp_path: Path) -> None:
    good = {"MD5": random_digest("md5").hex()}
    records: list[Any] = [
        synthetic_record(1, 1, **good),  # 1 fine
        {"MediaID": 2, **good},  # 2 no Category
        synthetic_record(3, "one", **good),  # 3 category not a number
        synthetic_record(4, 1, MD5="0123"),  # 4 short MD5
        synthetic_record(5, 2, SHA1=12345),  # 5 SHA1 not a string
        synthetic_record(6, 1),  # 6 no digest
        ["not", "an", "object"],  # 7
        synthetic_record(8, 1, AlternativeHashes={"HashName": "md5"}),  # 8 not a list
        synthetic_record(9, 1, MediaFiles=[{"MD5": "xyz"}], **good),  # 9 malformed, whole record bad
        synthetic_record(10, 1, AlternativeHashes=[{"HashValue": "00"}]),  # 10 no HashName
        synthetic_record(11, 3, **good),  # 11 fine
    ]
    path = write_vics(tmp_path / "case.json", records)
    entries, report = read_all(path, "vics")
    assert len(entries) == 2
    assert bad_locations(report) == [f"record {n}" for n in range(2, 11)]
    reasons = [r.reason for r in report.bad_records]
    assert reasons[0] == "no Category"
    assert reasons[1] == "Category is not a number: 'one'"
    assert reasons[2].startswith("MD5: not a md5 digest (32 hex digits): '0123'")
    assert reasons[3] == "SHA1 is not a string: 12345"
    assert reasons[4].startswith("no MD5, SHA1")
    assert reasons[5] == "not a JSON object but list"
    assert reasons[6] == "AlternativeHashes is not a list"
    assert reasons[7].startswith("MediaFiles[0].MD5: not a md5 digest")
    assert reasons[8] == "AlternativeHashes[0].HashName is not a string: None"


def test_strict_raises_one_line_naming_file_and_record(tmp_path: Path) -> None:
    records = [synthetic_record(i, 1, MD5=random_digest("md5").hex()) for i in range(3)]
    records[2]["MD5"] = "g" * 32
    path = write_vics(tmp_path / "case.json", records)
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "vics", ImportOptions(strict=True))
    assert str(raised.value) == f"{path}: record 3: MD5: not a md5 digest (32 hex digits): '{'g' * 32}'"


def test_truncated_json_fails_naming_the_last_good_record(tmp_path: Path) -> None:
    records = [synthetic_record(i, 1, MD5=random_digest("md5").hex()) for i in range(5)]
    full = write_vics(tmp_path / "case.json", records).read_bytes()
    cut = full.index(b'"MediaID": 3')  # inside record 4
    path = tmp_path / "cut.json"
    path.write_bytes(full[:cut])
    report = ImportReport()
    entries: list[DigestEntry] = []
    with pytest.raises(ImportFailed) as raised:
        entries.extend(read_vics(path, ImportOptions(), report))
    message = str(raised.value)
    assert message.startswith(f"{path}: invalid JSON after record 3: ")
    assert "premature EOF" in message
    assert "\n" not in message
    assert len(entries) == 3


def test_garbage_mid_stream_fails(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    md5 = random_digest("md5").hex()
    path.write_text('{"@odata.context": "x", "value": [{"Category": 1, "MD5": "' + md5 + '"}, oops]}')
    with pytest.raises(ImportFailed, match=r"invalid JSON after record 1: lexical error"):
        read_all(path, "vics")


@pytest.mark.parametrize(
    "document",
    ['{"odata.metadata": "x"}', '{"value": {"item": {"Category": 1}}}', "[1, 2]", '"value"'],
)
def test_json_without_value_array_is_not_vics(tmp_path: Path, document: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(document)
    with pytest.raises(ImportFailed, match='no "value" array at the root'):
        read_all(path, "vics")


def test_empty_value_array_is_fine(tmp_path: Path) -> None:
    path = write_vics(tmp_path / "case.json", [])
    assert read_all(path, "vics")[0] == []


def test_zero_size_media_and_empty_content_digests_are_left_out(tmp_path: Path) -> None:
    keep = random_digest("sha1")
    records = [
        synthetic_record(1, 1, MD5=random_digest("md5").hex()) | {"MediaSize": 0},
        synthetic_record(2, 1, MD5=random_digest("md5").hex()) | {"MediaSize": "0"},
        synthetic_record(3, 1, MD5=EMPTY_MD5, SHA1=EMPTY_SHA1.upper(), SHA256=EMPTY_SHA256),
        synthetic_record(
            4, 2, SHA1=keep.hex(), AlternativeHashes=[{"HashName": "blake3", "HashValue": EMPTY_BLAKE3}]
        ),
    ]
    path = write_vics(tmp_path / "case.json", records)
    entries, report = read_all(path, "vics")
    assert [(e.kind, e.digest) for e in entries] == [("sha1", keep)]
    assert report.left_out == {"zero-length file": 2, "digest of empty content": 4}
    assert report.bad_count == 0


# Run in a child process so that its peak resident memory measures only the reading (tracemalloc
# would slow the reader down about sevenfold).
MEASURE_READ = """
import json, resource, sys
from filters.importers import ImportOptions, ImportReport
from filters.importers.vics import read_vics
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = ImportReport()
last = None
for last in read_vics(sys.argv[1], ImportOptions(), report):
    pass
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth": (after - before) * 1024, "accepted": report.records[sys.argv[1]],
                  "left_out": report.left_out, "last": [last.kind, last.digest.hex(), last.category]}))
"""


def test_large_file_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    # Like Project VIC exports, most records are category 0 (left out): that keeps the test fast
    # while the whole file still goes through ijson.
    count = 200_000
    path = tmp_path / "big.json"
    md5s = os.urandom(16 * count).hex()
    sha1s = os.urandom(20 * count).hex()
    with path.open("w") as out:
        out.write(json.dumps({"@odata.context": CONTEXT_2_0})[:-1] + ', "value": [\n')
        out.write(
            ",\n".join(
                f'{{"MediaID":{i},"Category":{2 if i % 10 == 9 else 0},"MD5":"{md5s[32 * i : 32 * i + 32]}",'
                f'"SHA1":"{sha1s[40 * i : 40 * i + 40]}","MediaSize":{i + 1}}}'
                for i in range(count)
            )
        )
        out.write("\n]}\n")
    size = path.stat().st_size

    child = subprocess.run(
        [sys.executable, "-c", MEASURE_READ, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(child.stdout)

    assert result["accepted"] == 2 * count // 10
    assert result["left_out"] == {"VICS category 0": count - count // 10}
    assert result["last"] == ["sha1", sha1s[-40:], "vics-2"]
    assert size > 20_000_000
    assert result["growth"] < size // 8, f"memory grew by {result['growth']} bytes for a {size}-byte file"


@pytest.mark.parametrize(
    ("content", "begins"),
    [
        (b"MD5;SHA1;PhotoDNA\n6463f91837140767ffd886f0aec896aa;;\n", "'MD5;SHA1;PhotoDNA'"),
        (b"6463f91837140767ffd886f0aec896aa\n32487e4a53ba83b593ca75fd413d6a4e514bc8d4\n", "'6463f9"),
        (b"%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n", "'%%%% HASHDEEP-1.0'"),
    ],
)
def test_a_file_that_is_not_json_says_so(tmp_path: Path, content: bytes, begins: str) -> None:
    """A CSV (or a hash list, a hashdeep file) forced as VICS with --format vics: "not JSON", naming
    the file and quoting how it begins; before, yajl's "lexical error: invalid char in json text"."""
    path = tmp_path / "case.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFailed) as raised:
        read_all(path, "vics")
    message = str(raised.value)
    assert message.startswith(f"{path}: not JSON (it begins {begins}") and "\n" not in message
    assert message.endswith("): not a VICS JSON file")
    path.write_bytes(b"")
    with pytest.raises(ImportFailed, match=r"case.csv: empty file: not a VICS JSON file"):
        read_all(path, "vics")


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    """Windows tools write a UTF-8 BOM; detection already skipped it, the reader refused it."""
    md5 = random_digest("md5")
    path = write_vics(tmp_path / "case.json", [synthetic_record(1, 1, MD5=md5.hex())])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    for fmt in ("vics", None):
        entries, report = read_all(path, fmt)
        assert [e.digest for e in entries] == [md5] and report.bad_count == 0
