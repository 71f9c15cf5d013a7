"""The partition table reader on crafted tables: MBR, logical chains, GPT, damage, clipping."""

from __future__ import annotations

import os
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
