"""The phone scan over the fake phone: order, partial reads, verdict rules, what a phone can do."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.phones.camera import Storage
from agent.phones.fake import FakePhone, FakePhoneBackend
from agent.phones.scan import MAX_DEPTH, scan_phone, storage_names
from agent.scan import Scanner
from agent.scan.events import ScanEvent, ScanHit, ScanProgress
from agent.scan.report import ScanReport
from filters.digests import FileChangedError, digest_by_reads, digest_path
from filters.model import ContrabandFilter
from tests.agent.scan.conftest import FilterFactory, write_random

KNOWN_SIZE = 300_000


def randbytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def filters(tmp_path: Path) -> FilterFactory:
    return FilterFactory(tmp_path / "filters")


@pytest.fixture
def known(tmp_path: Path) -> bytes:
    return write_random(tmp_path / "known.jpg", KNOWN_SIZE, 99).read_bytes()


@pytest.fixture
def known_filter(filters: FilterFactory, tmp_path: Path, known: bytes) -> ContrabandFilter:
    return filters.make([tmp_path / "known.jpg"], ("sample", "blake3"))


def clean_tree(files: int = 20, seed: int = 1) -> dict[str, bytes]:
    tree = {f"Download/doc{i}.pdf": randbytes(20_000 + i, seed + i) for i in range(files // 2)}
    tree |= {f"DCIM/Camera/IMG_{i:04d}.jpg": randbytes(50_000 + i, seed + 100 + i) for i in range(files // 2)}
    return tree | {"Android/data/app/cache.bin": randbytes(5000, seed), "empty.txt": b"", "Music/": b""}


def run(
    phone: FakePhone, filters: list[ContrabandFilter], **kw: object
) -> tuple[ScanReport, list[ScanEvent]]:
    events: list[ScanEvent] = []
    with FakePhoneBackend({"usb:001,002": phone}).open("usb:001,002") as session:
        report = scan_phone(session, session.storages(), Scanner(filters, **kw), events.append)  # type: ignore[arg-type]
    return report, events


def test_a_known_photo_is_a_priority_match_with_its_storage_path(
    known_filter: ContrabandFilter, known: bytes
) -> None:
    phone = FakePhone({"Internal shared storage": clean_tree() | {"DCIM/Camera/IMG_9999.jpg": known}})
    report, events = run(phone, [known_filter])
    assert report.verdict == "priority_match"
    (hit,) = report.hits
    assert hit.path == b"Internal shared storage/DCIM/Camera/IMG_9999.jpg"
    assert hit.confirmed is True  # the whole file was read to confirm the sample hit
    assert hit.digests["sha1"] == hashlib.sha1(known).digest()  # and gave the report's hashes
    assert hit.digests["md5"] == hashlib.md5(known).digest()
    assert report.counts.files_confirmed == 1
    assert any(isinstance(e, ScanHit) for e in events)


def test_a_clean_phone_is_no_match_and_only_samples_cross_the_cable(known_filter: ContrabandFilter) -> None:
    tree = clean_tree(40)
    phone = FakePhone({"Internal shared storage": tree, "SD card": {"DCIM/a.jpg": randbytes(4_000_000, 5)}})
    report, _ = run(phone, [known_filter])
    assert report.verdict == "no_match" and report.complete
    assert report.counts.files_seen == len([k for k in tree if not k.endswith("/")]) + 1
    assert report.counts.files_empty == 1
    total = sum(map(len, tree.values())) + 4_000_000
    assert phone.bytes_read <= 0.2 * total  # samples only: 3 x 4 KiB (+1 byte) per file
    assert max(length for _, _, length in phone.reads) <= 4097 or phone.bytes_read < total


def test_media_folders_are_read_first(known_filter: ContrabandFilter) -> None:
    phone = FakePhone({"Internal shared storage": clean_tree(10)})
    run(phone, [known_filter])
    order = [path for path, _, _ in phone.reads]
    assert "/DCIM/" in order[0] or "/Download/" in order[0]
    assert order[-1].endswith("cache.bin")  # Android/data: last
    assert max(i for i, p in enumerate(order) if "/DCIM/Camera/" in p) < order.index(order[-1])


def test_a_phone_unplugged_mid_scan_is_never_green_and_keeps_its_hits(
    known_filter: ContrabandFilter, known: bytes
) -> None:
    tree = clean_tree(40) | {"DCIM/Camera/IMG_0000A.jpg": known}
    phone = FakePhone({"Internal shared storage": tree})
    run(phone, [known_filter])
    calls_to_the_hit = phone.calls - (
        len(phone.reads) - [p for p, _, _ in phone.reads].index("/store_00010001/DCIM/Camera/IMG_0000A.jpg")
    )
    phone = FakePhone({"Internal shared storage": tree}, gone_after_calls=calls_to_the_hit + 8)
    report, _ = run(phone, [known_filter])
    assert report.verdict == "priority_match" and not report.complete
    assert report.counts.files_not_scanned > 0
    phone = FakePhone({"Internal shared storage": clean_tree(40)}, gone_after_calls=30)
    report, _ = run(phone, [known_filter])
    assert report.verdict == "incomplete" and not report.complete
    assert "phone_gone" in report.counts.errors
    assert report.counts.files_not_scanned > 0


@pytest.mark.parametrize("fault", ["vanish", "shorter", "longer"])
def test_objects_that_vanish_or_lie_about_their_size_are_not_green(
    known_filter: ContrabandFilter, fault: str
) -> None:
    tree = clean_tree(10)
    phone = FakePhone({"Internal shared storage": tree})
    path = "/store_00010001/Download/doc0.pdf"
    if fault == "vanish":
        phone.vanish.add(path)
    else:
        phone.reported_sizes[path] = len(tree["Download/doc0.pdf"]) + (1 if fault == "shorter" else -1)
    report, _ = run(phone, [known_filter])
    assert report.verdict == "incomplete"
    (error,) = report.errors
    assert error.path == b"Internal shared storage/Download/doc0.pdf"
    assert error.code == ("vanished" if fault == "vanish" else "changed")


def test_a_locked_or_untrusted_phone_is_never_green(known_filter: ContrabandFilter) -> None:
    for phone in (FakePhone({"x": {}}, locked=True), FakePhone({"x": {}}, untrusted=True)):
        report, _ = run(phone, [known_filter])
        assert report.verdict == "incomplete"


def test_hostile_names_and_depth_are_errors_not_silence(known_filter: ContrabandFilter) -> None:
    deep = "/".join(["d"] * (MAX_DEPTH + 3)) + "/x.bin"
    phone = FakePhone({"Internal shared storage": {deep: b"abc", "ok.bin": b"abcd"}})
    report, _ = run(phone, [known_filter])
    assert report.verdict == "incomplete"
    assert report.counts.errors == {"too_deep": 1}


def test_without_partial_reads_the_verdict_is_the_same(known_filter: ContrabandFilter, known: bytes) -> None:
    phone = FakePhone({"Internal shared storage": clean_tree(6) | {"DCIM/k.jpg": known}}, partial_reads=False)
    report, _ = run(phone, [known_filter])
    assert report.verdict == "priority_match" and report.hits[0].confirmed is True


def test_whole_file_kinds_read_every_byte_once(filters: FilterFactory, tmp_path: Path, known: bytes) -> None:
    md5_only = filters.make([tmp_path / "known.jpg"], ("md5",))
    tree = clean_tree(6)
    phone = FakePhone({"Internal shared storage": tree | {"Pictures/k.jpg": known}})
    report, _ = run(phone, [md5_only])
    assert report.verdict == "priority_match"
    assert phone.bytes_read == sum(map(len, tree.values())) + len(known)


def test_progress_is_reported_and_counts_add_up(known_filter: ContrabandFilter) -> None:
    phone = FakePhone({"Internal shared storage": clean_tree(20)})
    report, events = run(phone, [known_filter])
    counts = report.counts
    assert counts.files_read + counts.files_empty == counts.files_seen
    assert report.to_json()["roots"][0]["path"] == "Internal shared storage"
    assert all(isinstance(e, ScanProgress) or e is not None for e in events)


def test_storage_names_are_unique_and_printable() -> None:
    storages = [
        Storage("/a", "SD card"),
        Storage("/b", "SD card"),
        Storage("/c", ""),
        Storage("/d", "x/y\u202e"),
    ]
    assert storage_names(storages) == ["SD card", "SD card (2)", "c", "x_y\\u202e"]


def test_digest_by_reads_matches_digest_path(tmp_path: Path) -> None:
    for size in (1, 4096, 12288, 12289, 3 << 20):
        data = randbytes(size, size)
        path = tmp_path / f"f{size}"
        path.write_bytes(data)
        read_at = slicer(data)
        kind_sets: list[tuple[str, ...]] = [("sample",), ("sample", "md5", "sha256")]
        for kinds in kind_sets:
            found, _ = digest_by_reads(size, kinds, read_at, chunk=1 << 16)
            assert found == digest_path(path, kinds)
        lies: list[tuple[int, tuple[str, ...]]] = [(size + 1, ("sample",)), (size + 1, ("md5",))]
        for claimed, kinds in [*lies, (size - 1, ("md5", "sample"))]:
            if claimed:
                with pytest.raises(FileChangedError):
                    digest_by_reads(claimed, kinds, read_at)


def slicer(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: data[offset : offset + length]


def test_a_file_without_details_or_a_refused_listing_is_an_error_of_its_own(
    known_filter: ContrabandFilter, known: bytes
) -> None:
    tree = clean_tree(10) | {"DCIM/Camera/sub/k.jpg": known}
    phone = FakePhone({"Internal shared storage": tree})
    phone.no_details.add("/store_00010001/Download/doc0.pdf")
    phone.unlistable.add("/store_00010001/DCIM/Camera")
    report, _ = run(phone, [known_filter])
    assert report.verdict == "priority_match"  # the refused folder's subfolders were still walked
    assert sorted(e.code for e in report.errors) == ["list_failed", "no_details"]
