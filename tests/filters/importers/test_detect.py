from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from filters.errors import ImportFailed, UsageError
from filters.importers import FORMATS, ImportOptions, ImportReport
from filters.importers.detect import SNIFF_BYTES, detect_format, parse_input_spec, read_input

from .synthetic import random_digest, read_all

MD5 = random_digest("md5").hex()
SHA1 = random_digest("sha1").hex()

SAMPLES = {
    "vics-2.0": ("vics", json.dumps({"@odata.context": "x", "value": [{"Category": 1, "MD5": MD5}]}), [MD5]),
    "vics-1.3": (
        "vics",
        json.dumps({"odata.metadata": "x", "value": [{"Category": "1", "MD5": MD5}]}),
        [MD5],
    ),
    "vics-value-only": ("vics", '\n  {"value": [{"Category": 2, "SHA1": "' + SHA1 + '"}]}', [SHA1]),
    "hashdeep": ("hashdeep", f"%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n## x\n4,{MD5},/a\n", [MD5]),
    "icse": ("icse", f"MD5;SHA1;PhotoDNA;Image ID\n{MD5};{SHA1};;1\n", [MD5, SHA1]),
    "icse-lower-bom": ("icse", f"\ufeffmd5;sha1;photodna\n{MD5};{SHA1};\n", [MD5, SHA1]),
    "list": ("list", f"# synthetic\n\n  {MD5.upper()}  \n{SHA1}\n", [MD5, SHA1]),
    "list-sha256": ("list", f"{random_digest('sha256').hex()}\n", []),  # needs --list-kind
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_format_is_detected_and_read(tmp_path: Path, name: str) -> None:
    fmt, text, digests = SAMPLES[name]
    path = tmp_path / "input"
    path.write_text(text, encoding="utf-8")
    assert detect_format(path) == fmt
    entries, report = read_all(path)
    assert [e.digest.hex() for e in entries] == digests
    assert report.bad_count == (0 if digests else 1)


def test_a_directory_is_a_folder_input(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"synthetic")
    assert detect_format(tmp_path) == "folder"
    entries, _ = read_all(tmp_path)
    assert [e.kind for e in entries] == ["blake3", "sample"]


def test_long_list_is_detected_from_its_first_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("".join(random_digest("sha1").hex() + "\n" for _ in range(3 * SNIFF_BYTES // 41)))
    assert detect_format(path) == "list"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n# only comments\n",
        '{"some": "other json"}',
        f"{MD5}  synthetic.bin\n",  # md5sum output is not a list
        f"{MD5}\n{MD5[:30]}\n",
        "SHA1;MD5\n",
        "%%%% HASHDEEP-2.0\n",
    ],
)
def test_unrecognised_input_asks_for_format(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mystery"
    path.write_text(text)
    with pytest.raises(ImportFailed) as raised:
        detect_format(path)
    assert str(raised.value) == f"{path}: cannot tell the format (give --format {'|'.join(FORMATS)})"


def test_binary_input_is_not_detected(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImportFailed, match="cannot tell the format"):
        read_all(path)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("vics:/data/case.json", ("vics", "/data/case.json")),
        ("list:relative.txt", ("list", "relative.txt")),
        ("folder:/mnt/a:b", ("folder", "/mnt/a:b")),
        ("hashdeep:x", ("hashdeep", "x")),
        ("icse:x", ("icse", "x")),
        ("/data/case.json", (None, "/data/case.json")),
        ("VICS:/data/case.json", (None, "VICS:/data/case.json")),
        ("csv:/data/x", (None, "csv:/data/x")),
        ("C:\\case\\x.json", (None, "C:\\case\\x.json")),
        ("./vics:odd-name.json", (None, "./vics:odd-name.json")),
    ],
)
def test_parse_input_spec(spec: str, expected: tuple[str | None, str]) -> None:
    assert parse_input_spec(spec) == expected


def test_prefix_without_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no path after list:"):
        parse_input_spec("list:")


def test_format_prefix_overrides_detection(tmp_path: Path) -> None:
    # Detection fails on this list (one line is no digest); "list:" reads it with a bad record.
    path = tmp_path / "almost-a-list.txt"
    path.write_text(f"# synthetic\n{MD5}\nnot a digest\n{SHA1}\n")
    with pytest.raises(ImportFailed, match="cannot tell the format"):
        read_all(path)
    fmt, spec_path = parse_input_spec(f"list:{path}")
    entries, report = read_all(spec_path, fmt)
    assert [e.digest.hex() for e in entries] == [MD5, SHA1]
    assert [str(r) for r in report.bad_records] == [f"{path}: line 3: not a hex digest: 'not a digest'"]

    # And a format given explicitly wins over what detection would say.
    with pytest.raises(ImportFailed, match=r"not JSON \(it begins '# synthetic'\): not a VICS JSON file"):
        read_all(path, "vics")


def test_missing_input_fails_when_read_input_is_called(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    for fmt in (None, *FORMATS):
        with pytest.raises(ImportFailed) as raised:
            read_input(missing, fmt, ImportOptions(), ImportReport())
        assert str(raised.value) == f"{missing}: No such file or directory"


def test_directory_given_as_a_file_format_fails(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as raised:
        read_all(tmp_path, "list")
    assert str(raised.value) == f"{tmp_path}: Is a directory"


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown input format"):
        read_input(tmp_path, "csv", ImportOptions(), ImportReport())


def test_strict_option_makes_the_report_strict(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"{MD5}\nzz\n")
    report = ImportReport()
    entries = read_input(path, "list", ImportOptions(strict=True), report)
    assert report.strict
    with pytest.raises(ImportFailed, match="line 2"):
        list(entries)


def test_pipe_is_not_sniffed_but_can_be_read_with_a_prefix(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ImportFailed, match="cannot tell the format of a pipe"):
        read_all(fifo)
    # A daemon thread, so that a failing test cannot leave the process waiting for a reader.
    writer = threading.Thread(target=fifo.write_text, args=(f"{MD5}\n{SHA1}\n",), daemon=True)
    writer.start()
    fmt, spec_path = parse_input_spec(f"list:{fifo}")
    entries, _ = read_all(spec_path, fmt)
    writer.join(timeout=10)
    assert [e.digest.hex() for e in entries] == [MD5, SHA1]
