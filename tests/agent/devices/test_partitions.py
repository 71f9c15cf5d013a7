"""The partition table reader on crafted tables: MBR, logical chains, GPT, damage, clipping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.devices import partitions
from agent.devices.partitions import read_partition_table

MiB = 1 << 20


def reader(disk: bytes | bytearray):  # type: ignore[no-untyped-def]
    return lambda offset, n: bytes(disk[offset : offset + n])


def mbr_entry(kind: int, start: int, sectors: int, status: int = 0) -> bytes:
    return (
        bytes([status, 0, 0, 0, kind, 0, 0, 0]) + start.to_bytes(4, "little") + sectors.to_bytes(4, "little")
    )


def mbr(entries: list[bytes], size: int = 64 * MiB) -> bytearray:
    disk = bytearray(size)
    for i, entry in enumerate(entries):
        disk[446 + 16 * i : 462 + 16 * i] = entry
    disk[510:512] = b"\x55\xaa"
    return disk


def test_primary_partitions_and_logical_chain() -> None:
    disk = mbr([mbr_entry(0x83, 2048, 4096), mbr_entry(0x0F, 8192, 40000)])
    # two EBRs: logical 5 at 8192+63, logical 6 at 8192+20000+63
    first_ebr = bytearray(512)
    first_ebr[446:462] = mbr_entry(0x07, 63, 1000)
    first_ebr[462:478] = mbr_entry(0x05, 20000, 2000)
    first_ebr[510:512] = b"\x55\xaa"
    second_ebr = bytearray(512)
    second_ebr[446:462] = mbr_entry(0x0C, 63, 1500)
    second_ebr[510:512] = b"\x55\xaa"
    disk[8192 * 512 : 8192 * 512 + 512] = first_ebr
    disk[28192 * 512 : 28192 * 512 + 512] = second_ebr
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "mbr"
    assert [(p.number, p.start // 512, p.size // 512, p.type_id) for p in table.partitions] == [
        (1, 2048, 4096, "0x83"),
        (5, 8255, 1000, "0x07"),
        (6, 28255, 1500, "0x0c"),
    ]
    assert table.problems == ()


def test_logical_chain_that_loops_is_cut() -> None:
    disk = mbr([mbr_entry(0x05, 8192, 40000)])
    ebr = bytearray(512)
    ebr[446:462] = mbr_entry(0x07, 63, 100)
    ebr[462:478] = mbr_entry(0x05, 0, 100)  # points back at itself: relative 0 means "stop"
    ebr[462 + 8 : 462 + 12] = (0).to_bytes(4, "little")
    ebr[510:512] = b"\x55\xaa"
    disk[8192 * 512 : 8192 * 512 + 512] = ebr
    loop_ebr = bytearray(ebr)
    loop_ebr[462:478] = mbr_entry(0x05, 1000, 100)
    disk[8192 * 512 : 8192 * 512 + 512] = loop_ebr
    disk[9192 * 512 : 9192 * 512 + 512] = (
        bytearray(ebr[:462]) + mbr_entry(0x05, 1000, 100) + bytes(32) + b"\x55\xaa"
    )
    table = read_partition_table(reader(disk), len(disk))
    assert len(table.partitions) == 2
    assert "loops" in " ".join(table.problems)


def test_partition_past_the_end_is_clipped_and_reported() -> None:
    disk = mbr([mbr_entry(0x83, 2048, 10 * 2048 * 1024)], size=8 * MiB)
    table = read_partition_table(reader(disk), len(disk))
    (part,) = table.partitions
    assert part.start + part.size == len(disk)
    assert table.problems == ("partition 1 extends past the end of the device; only its start is read",)


def test_fat_superfloppy_is_not_a_partition_table() -> None:
    disk = bytearray(8 * MiB)
    disk[0:3] = b"\xeb\x3c\x90"
    disk[3:11] = b"mkfs.fat"
    disk[446:510] = os.urandom(64)  # boot code where a table would be
    disk[446] = 0x33
    disk[510:512] = b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "none"
    assert [(p.start, p.size) for p in table.partitions] == [(0, len(disk))]


def gpt_disk(tmp_path: Path, script: str, size: int = 64 * MiB) -> bytearray:
    image = tmp_path / "gpt.img"
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", str(image)], input=script.encode(), check=True, capture_output=True)
    return bytearray(image.read_bytes())


@pytest.mark.skipif(
    not os.path.exists("/usr/sbin/sfdisk") and not os.path.exists("/sbin/sfdisk"), reason="needs sfdisk"
)
def test_gpt_and_backup_header(tmp_path: Path) -> None:
    disk = gpt_disk(
        tmp_path, "label: gpt\n,8M,L\nsize=8M,type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7,name=photos\n"
    )
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "gpt"
    assert [(p.number, p.start, p.size, p.type_name) for p in table.partitions] == [
        (1, MiB, 8 * MiB, "Linux filesystem"),
        (2, 9 * MiB, 8 * MiB, "Microsoft basic data"),
    ]
    assert table.partitions[1].name == "photos"
    disk[512 + 100] ^= 0xFF  # damage the primary header's reserved area: its CRC no longer matches
    disk[512 + 16] ^= 0x01
    damaged = read_partition_table(reader(disk), len(disk))
    assert [p.start for p in damaged.partitions] == [MiB, 9 * MiB]
    assert damaged.problems == ("primary GPT header is damaged (header checksum mismatch); used the backup",)
    disk[len(disk) - 512 + 16] ^= 0x01
    both = read_partition_table(reader(disk), len(disk))
    assert both.scheme == "gpt" and both.partitions == ()
    assert "and so is its backup" in both.problems[0]


def test_gpt_with_implausible_entry_count_is_refused() -> None:
    disk = bytearray(4 * MiB)
    header = bytearray(512)
    header[0:8] = b"EFI PART"
    header[8:12] = b"\x00\x00\x01\x00"
    header[12:16] = (92).to_bytes(4, "little")
    header[72:80] = (2).to_bytes(8, "little")
    header[80:84] = (10**9).to_bytes(4, "little")
    header[84:88] = (128).to_bytes(4, "little")
    header[56:72] = uuid.uuid4().bytes
    header[16:20] = zlib.crc32(bytes(header[:16]) + b"\x00" * 4 + bytes(header[20:92])).to_bytes(4, "little")
    disk[512:1024] = header
    table = read_partition_table(reader(disk), len(disk))
    assert table.partitions == ()
    assert "implausible partition entry array" in table.problems[0]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.integers(0, 1 << 40))
def test_random_bytes_never_raise(head: bytes, size: int) -> None:
    disk = bytearray(head)
    read_partition_table(reader(disk), size)


# --- What a table describes and is not read is always a problem ---------------------------------

SFDISK = shutil.which("sfdisk") or next(
    (p for p in ("/usr/sbin/sfdisk", "/sbin/sfdisk") if os.path.exists(p)), None
)
needs_sfdisk = pytest.mark.skipif(SFDISK is None, reason="needs sfdisk (util-linux)")


def ebr(*entries: bytes) -> bytes:
    """An extended boot record with ``entries`` in its first slots."""
    sector = bytearray(512)
    for i, entry in enumerate(entries):
        sector[446 + 16 * i : 462 + 16 * i] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def put(disk: bytearray, lba: int, data: bytes | bytearray, sector_size: int = 512) -> None:
    disk[lba * sector_size : lba * sector_size + len(data)] = data


def chain(disk: bytearray, extended_lba: int, count: int, step: int = 4, kind: int = 0x83) -> None:
    """``count`` logical partitions of ``step - 1`` sectors, one record every ``step`` sectors."""
    for k in range(count):
        link = mbr_entry(0x05, (k + 1) * step, step) if k + 1 < count else bytes(16)
        put(disk, extended_lba + k * step, ebr(mbr_entry(kind, 1, step - 1), link))


def spans(table) -> list[tuple[int, int, int, str]]:  # type: ignore[no-untyped-def]
    return [(p.number, p.start // 512, p.size // 512, p.type_id) for p in table.partitions]


def test_logical_partitions_past_the_128th_are_read() -> None:
    disk = mbr([mbr_entry(0x83, 2048, 100), mbr_entry(0x0F, 4096, 200 * 4)], size=4 * MiB)
    chain(disk, 4096, 200)
    table = read_partition_table(reader(disk), len(disk))
    assert table.problems == ()
    assert [p.number for p in table.partitions] == [1, *range(5, 205)]
    assert spans(table)[-1] == (204, 4096 + 199 * 4 + 1, 3, "0x83")


def test_a_chain_longer_than_the_bound_is_cut_with_a_problem() -> None:
    disk = mbr([mbr_entry(0x05, 2048, 1100 * 2)], size=4 * MiB)
    chain(disk, 2048, 1100, step=2)
    table = read_partition_table(reader(disk), len(disk))
    assert 128 < len(table.partitions) < 1100
    assert table.problems and all("not read" in problem for problem in table.problems), table.problems


def test_type_zero_entry_with_a_size_is_a_partition() -> None:
    disk = mbr([mbr_entry(0x00, 0, 4096, status=0x80), mbr_entry(0xEF, 4096, 100)], size=4 * MiB)
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "mbr" and table.problems == ()
    assert spans(table) == [(1, 0, 4096, "0x00"), (2, 4096, 100, "0xef")]
    only_zero = mbr([bytes(16), mbr_entry(0x00, 2048, 100)], size=4 * MiB)
    assert spans(read_partition_table(reader(only_zero), len(only_zero))) == [(2, 2048, 100, "0x00")]


def test_entries_that_describe_nothing_are_a_superfloppy() -> None:
    disk = mbr([bytes(16), mbr_entry(0x83, 2048, 0)], size=4 * MiB)  # a type, but no sectors
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "none" and table.problems == ()
    assert [(p.start, p.size) for p in table.partitions] == [(0, len(disk))]


def test_extended_partition_starting_past_the_end_is_a_problem() -> None:
    disk = mbr([mbr_entry(0x83, 2048, 100), mbr_entry(0x0F, 100_000, 100)], size=4 * MiB)
    table = read_partition_table(reader(disk), len(disk))
    assert spans(table) == [(1, 2048, 100, "0x83")]
    assert table.problems == ("partition 2 (extended) starts past the end of the device; not read",)


def test_ebr_link_past_the_end_is_a_problem() -> None:
    disk = mbr([mbr_entry(0x05, 2048, 4000)], size=4 * MiB)
    put(disk, 2048, ebr(mbr_entry(0x83, 1, 10), mbr_entry(0x05, 50_000, 10)))
    table = read_partition_table(reader(disk), len(disk))
    assert spans(table) == [(5, 2049, 10, "0x83")]
    assert table.problems == (
        "extended boot record at sector 2048 links to sector 52048, past the end of the device; not read",
    )


def test_ebr_without_a_signature_is_a_problem() -> None:
    disk = mbr([mbr_entry(0x05, 2048, 4000)], size=4 * MiB)
    table = read_partition_table(reader(disk), len(disk))
    assert table.partitions == ()
    assert table.problems == ("extended boot record at sector 2048 is not valid; not read",)


def test_logical_numbers_continue_across_two_extended_partitions() -> None:
    disk = mbr([mbr_entry(0x05, 2048, 8), mbr_entry(0x0F, 4096, 8)], size=4 * MiB)
    chain(disk, 2048, 2)
    chain(disk, 4096, 2)
    table = read_partition_table(reader(disk), len(disk))
    assert table.problems == ()
    assert [(n, start) for n, start, _, _ in spans(table)] == [(5, 2049), (6, 2053), (7, 4097), (8, 4101)]


def test_ebr_entries_are_read_as_linux_reads_them() -> None:
    """Data in any slot (DR-DOS puts the link first), the first link followed; slots 3 and 4
    outside the extended partition are garbage to Linux: not numbered, but never silently dropped."""
    disk = mbr([mbr_entry(0x05, 2048, 100)], size=4 * MiB)
    put(disk, 2048, ebr(mbr_entry(0x05, 50, 50), mbr_entry(0x07, 1, 10), mbr_entry(0x83, 20, 5)))
    put(disk, 2098, ebr(bytes(16), mbr_entry(0x0C, 2, 8), bytes(16), mbr_entry(0x83, 900, 5)))
    table = read_partition_table(reader(disk), len(disk))
    assert spans(table) == [(5, 2049, 10, "0x07"), (6, 2068, 5, "0x83"), (7, 2100, 8, "0x0c")]
    assert table.problems == (
        "extended boot record at sector 2098: entry 4 lies outside the extended partition; not read",
    )
    put(disk, 2098, ebr(mbr_entry(0x05, 60, 10), mbr_entry(0x0C, 2, 8), mbr_entry(0x05, 70, 10)))
    second_link = read_partition_table(reader(disk), len(disk))
    assert "extended boot record at sector 2098: entry 3 is a second link; not read" in second_link.problems


def test_ebr_with_only_a_link_is_followed() -> None:
    disk = mbr([mbr_entry(0x05, 2048, 100)], size=4 * MiB)
    put(disk, 2048, ebr(bytes(16), mbr_entry(0x05, 10, 10)))
    put(disk, 2058, ebr(mbr_entry(0x83, 1, 5)))
    table = read_partition_table(reader(disk), len(disk))
    assert spans(table) == [(5, 2059, 5, "0x83")] and table.problems == ()


def sfdisk_image(tmp_path: Path, script: str, size: int = 64 * MiB, name: str = "disk.img") -> Path:
    image = tmp_path / name
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run([str(SFDISK), "-q", str(image)], input=script.encode(), check=True, capture_output=True)
    return image


def sfdisk_partitions(device: Path | str) -> tuple[int, list[tuple[int, int, int, str]]]:
    """(sector size, [(number, start byte, size in bytes, type)]) as sfdisk --json reads ``device``,
    extended containers left out (the agent reads their logical partitions, not them)."""
    done = subprocess.run([str(SFDISK), "--json", str(device)], capture_output=True, text=True, check=True)
    table = json.loads(done.stdout)["partitiontable"]
    size = int(table.get("sectorsize", 512))
    found = []
    for part in table["partitions"]:
        kind = part["type"].lower()
        if table["label"] == "dos" and int(kind, 16) in (0x05, 0x0F, 0x85):
            continue
        number = int(re.search(r"(\d+)$", part["node"]).group(1))  # type: ignore[union-attr]
        found.append((number, part["start"] * size, part["size"] * size, kind))
    return size, found


def agent_partitions(table) -> list[tuple[int, int, int, str]]:  # type: ignore[no-untyped-def]
    if table.scheme == "mbr":
        return [(p.number, p.start, p.size, f"{int(p.type_id, 16):x}") for p in table.partitions]
    return [(p.number, p.start, p.size, p.type_id) for p in table.partitions]


@needs_sfdisk
def test_mbr_as_sfdisk_reads_it(tmp_path: Path) -> None:
    image = sfdisk_image(tmp_path, "label: dos\n,8M,0\n,8M,L\n,,E\n,4M,L\n,4M,7\n,,c\n")
    disk = image.read_bytes()
    table = read_partition_table(reader(disk), len(disk))
    assert table.problems == ()
    assert agent_partitions(table) == sfdisk_partitions(image)[1]
    assert [p.number for p in table.partitions] == [1, 2, 5, 6, 7]


@contextmanager
def loop_device(image: Path, sector_size: int) -> Iterator[str]:
    if shutil.which("losetup") is None:
        pytest.skip("needs losetup (util-linux)")
    done = subprocess.run(
        ["losetup", "-f", "--show", "--sector-size", str(sector_size), str(image)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    try:
        yield done.stdout.strip()
    finally:
        subprocess.run(["losetup", "-d", done.stdout.strip()], capture_output=True, check=False)


@needs_sfdisk
@pytest.mark.root
def test_mbr_on_a_disk_with_4096_byte_sectors(tmp_path: Path) -> None:
    """A 4Kn disk: sfdisk 2.38 has no --sector-size, so the table is written through a loop device
    with 4096-byte logical sectors, and both sfdisk and the agent read it there."""
    image = tmp_path / "4kn.img"
    with image.open("wb") as f:
        f.truncate(64 * MiB)
    with loop_device(image, 4096) as device:
        script = "label: dos\n,8M,c\n,,E\n,4M,L\n,4M,7\n"
        subprocess.run([str(SFDISK), "-q", device], input=script.encode(), capture_output=True, check=False)
        sector_size, expected = sfdisk_partitions(device)
        fd = os.open(device, os.O_RDONLY)
        try:
            assert partitions.logical_sector_size(fd) == 4096
            table = read_partition_table(
                lambda o, n: os.pread(fd, n, o), 64 * MiB, partitions.logical_sector_size(fd)
            )
        finally:
            os.close(fd)
    assert sector_size == 4096
    assert [start for _, start, _, _ in expected] == [MiB, 10 * MiB, 15 * MiB]
    assert table.scheme == "mbr" and table.sector_size == 4096 and table.problems == ()
    assert agent_partitions(table) == expected
    disk = image.read_bytes()  # the image file itself: 512 unless told
    assert agent_partitions(read_partition_table(reader(disk), len(disk), sector_size=4096)) == expected
    assert agent_partitions(read_partition_table(reader(disk), len(disk))) != expected


def test_logical_sector_size_of_a_file_is_512(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(bytes(4096))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert partitions.logical_sector_size(fd) == 512
    finally:
        os.close(fd)
    with pytest.raises(ValueError):
        read_partition_table(reader(b""), 0, sector_size=1000)


@needs_sfdisk
@pytest.mark.root
def test_gpt_on_a_4kn_disk_is_found_in_its_image_file(tmp_path: Path) -> None:
    image = tmp_path / "4kn-gpt.img"
    with image.open("wb") as f:
        f.truncate(64 * MiB)
    with loop_device(image, 4096) as device:
        subprocess.run([str(SFDISK), "-q", device], input=b"label: gpt\n,8M,L\n,8M,L\n", capture_output=True)
        _, expected = sfdisk_partitions(device)
    disk = image.read_bytes()
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "gpt" and table.sector_size == 4096 and table.problems == ()
    assert agent_partitions(table) == expected


GPT_SCRIPT = "label: gpt\n,8M,L\nsize=8M,type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7,name=photos\n"


@needs_sfdisk
def test_gpt_with_its_primary_header_zeroed_is_read_from_the_backup(tmp_path: Path) -> None:
    image = sfdisk_image(tmp_path, GPT_SCRIPT)
    _, expected = sfdisk_partitions(image)
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={image}", "bs=512", "seek=1", "count=1", "conv=notrunc"],
        check=True, capture_output=True,
    )  # fmt: skip
    disk = image.read_bytes()
    assert disk[512:1024] == bytes(512) and disk[510:512] == b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "gpt"
    assert agent_partitions(table) == expected
    assert table.problems == ()  # the primary entry array is intact and agrees: everything is read
    assert table.notes == (
        "primary GPT header missing; read from the backup header (the entry arrays agree)",
    )
    disk = bytearray(disk)
    disk[2 * 512 + 200] ^= 0x01  # the primary array no longer agrees: what it described is unknown
    table = read_partition_table(reader(bytes(disk)), len(disk))
    assert agent_partitions(table) == expected
    assert table.problems == (
        "primary GPT header missing and its entry array differs from the backup's; used the backup",
    )


@needs_sfdisk
def test_a_wiped_primary_header_may_have_counted_more_entries_than_its_backup(tmp_path: Path) -> None:
    """A table of 4 entries: the primary's array is 1 sector, then nothing until the first usable
    LBA. With its header wiped, an entry in that space (a longer primary array) is not read."""
    image = sfdisk_image(tmp_path, "label: gpt\ntable-length: 4\n,8M,L\n")
    disk = bytearray(image.read_bytes())
    disk[512:1024] = bytes(512)
    table = read_partition_table(reader(bytes(disk)), len(disk))
    assert table.problems == () and len(table.partitions) == 1 and table.notes
    disk[3 * 512 : 3 * 512 + 16] = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le  # an entry
    table = read_partition_table(reader(bytes(disk)), len(disk))
    assert len(table.partitions) == 1 and table.notes == ()
    assert table.problems == (
        "primary GPT header missing and its entry array differs from the backup's; used the backup",
    )


@needs_sfdisk
def test_protective_mbr_without_any_gpt_header_is_a_problem(tmp_path: Path) -> None:
    disk = bytearray(sfdisk_image(tmp_path, GPT_SCRIPT).read_bytes())
    disk[512:1024] = bytes(512)
    disk[-512:] = bytes(512)
    table = read_partition_table(reader(disk), len(disk))
    assert table.partitions == ()
    assert table.problems == (
        "partition 1 (type 0xee) stands for a GPT, but no GPT header was found; not read",
    )


@needs_sfdisk
def test_gpt_with_2048_entries(tmp_path: Path) -> None:
    script = "label: gpt\ntable-length: 2048\n,1M,L\ndisk.img1500 : size=1M, type=L\ndisk.img2048 : size=1M\n"
    image = sfdisk_image(tmp_path, script)
    _, expected = sfdisk_partitions(image)
    assert [n for n, _, _, _ in expected] == [1, 1500, 2048]
    disk = image.read_bytes()
    table = read_partition_table(reader(disk), len(disk))
    assert table.problems == ()
    assert agent_partitions(table) == expected


def crafted_gpt(
    size: int, entries: list[tuple[int, int, int]], count: int = 128, sector_size: int = 512
) -> bytearray:
    """A GPT with valid checksums, both headers: ``entries`` are (slot, first LBA, last LBA)."""
    disk = bytearray(size)
    array = bytearray(count * 128)
    for slot, first, last in entries:
        entry = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le + uuid.uuid4().bytes_le
        entry += first.to_bytes(8, "little") + last.to_bytes(8, "little")
        array[(slot - 1) * 128 : (slot - 1) * 128 + len(entry)] = entry
    total = size // sector_size
    array_sectors = -(-len(array) // sector_size)
    for lba, alternate, array_lba in ((1, total - 1, 2), (total - 1, 1, total - 1 - array_sectors)):
        header = bytearray(92)
        header[0:8] = b"EFI PART"
        header[8:12] = b"\x00\x00\x01\x00"
        header[12:16] = (92).to_bytes(4, "little")
        header[24:32] = lba.to_bytes(8, "little")
        header[32:40] = alternate.to_bytes(8, "little")
        header[56:72] = uuid.UUID(int=7).bytes_le
        header[72:80] = array_lba.to_bytes(8, "little")
        header[80:84] = count.to_bytes(4, "little")
        header[84:88] = (128).to_bytes(4, "little")
        header[88:92] = zlib.crc32(array).to_bytes(4, "little")
        header[16:20] = zlib.crc32(header).to_bytes(4, "little")
        put(disk, lba, header, sector_size)
        put(disk, array_lba, array, sector_size)
    return disk


def test_more_partitions_than_the_bound_is_a_problem() -> None:
    disk = crafted_gpt(2 * MiB, [(i, 100 + i, 100 + i) for i in range(1, 1101)], count=1200)
    table = read_partition_table(reader(disk), len(disk))
    assert len(table.partitions) == 1024
    assert table.problems == ("more than 1024 partitions: partition 1025 and those after it are not read",)


def test_entry_array_larger_than_the_bound_is_refused() -> None:
    disk = crafted_gpt(8 * MiB, [(1, 40, 50)], count=40_000)  # 5 MiB of entries
    table = read_partition_table(reader(disk), len(disk))
    assert table.partitions == () and "implausible partition entry array" in table.problems[0]


def test_gpt_entry_starting_past_the_end_is_a_problem() -> None:
    disk = crafted_gpt(MiB, [(1, 40, 50), (2, 5000, 6000)])
    table = read_partition_table(reader(disk), len(disk))
    assert [p.number for p in table.partitions] == [1]
    assert table.problems == ("partition 2 starts past the end of the device; not read",)


def test_gpt_header_beside_a_plain_mbr_is_a_problem() -> None:
    """Linux and libblkid read the MBR when it has no protective (0xee) entry: so does the agent,
    and the GPT it does not read is a problem."""
    disk = crafted_gpt(MiB, [(1, 40, 50)])
    disk[446:462] = mbr_entry(0x0C, 100, 200)
    disk[510:512] = b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "mbr" and spans(table) == [(1, 100, 200, "0x0c")]
    assert table.problems == (
        "a GPT header is at sector 1 but the MBR has no protective (0xee) entry; the GPT is not read",
    )


def test_hybrid_mbr_entry_that_is_no_gpt_partition_is_a_problem() -> None:
    disk = crafted_gpt(MiB, [(1, 40, 50)])
    disk[446:462] = mbr_entry(0xEE, 1, 39)
    disk[462:478] = mbr_entry(0x83, 40, 11)  # the same as GPT partition 1: fine
    disk[478:494] = mbr_entry(0x0C, 100, 200)  # not in the GPT
    disk[510:512] = b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "gpt" and [p.number for p in table.partitions] == [1]
    assert table.problems == ("MBR partition 3 (type 0x0c) is not a GPT partition; not read",)


def test_backup_gpt_beside_a_plain_mbr_is_a_problem() -> None:
    """The primary header wiped, an MBR written: the backup at the end still describes partitions."""
    disk = crafted_gpt(MiB, [(1, 40, 50)])
    disk[512:1024] = bytes(512)
    disk[446:462] = mbr_entry(0x0C, 100, 200)
    disk[510:512] = b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "mbr" and spans(table) == [(1, 100, 200, "0x0c")]
    assert table.problems == (
        "a GPT header is at sector 2047 but the MBR has no protective (0xee) entry; the GPT is not read",
    )


def test_backup_gpt_behind_a_volume_boot_sector_is_a_problem() -> None:
    """A stick that was GPT, then formatted as one FAT volume: the volume is read, and the stale
    backup GPT is a problem, not a reason to skip the volume."""
    disk = crafted_gpt(MiB, [(1, 40, 50)])
    disk[0:1024] = bytes(1024)  # the volume's first sectors: its boot sector, then FAT data
    disk[0:11] = b"\xeb\x3c\x90mkfs.fat"
    disk[446] = 0x33  # boot code where a table would be
    disk[510:512] = b"\x55\xaa"
    table = read_partition_table(reader(disk), len(disk))
    assert table.scheme == "none" and [(p.start, p.size) for p in table.partitions] == [(0, len(disk))]
    assert table.problems == (
        "a GPT header is at sector 2047 but sector 0 is a volume's boot sector; the GPT is not read",
    )
