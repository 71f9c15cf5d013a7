"""NTFS volumes as Windows leaves them when a stick is pulled: a $LogFile with transactions to
replay, or the volume's dirty flag set. Written into an image made by mkntfs, byte by byte, from
the published on-disk layout (the ntfs-3g headers layout.h and logfile.h)."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path


def _ntfsinfo(image: Path, *args: str) -> str:
    return subprocess.run(["ntfsinfo", *args, str(image)], capture_output=True, text=True, check=True).stdout


def _geometry(image: Path) -> tuple[int, int, int, int]:
    """(cluster size, MFT record size, MFT LCN, MFT mirror LCN) from the boot sector."""
    boot = image.read_bytes()[:512]
    cluster = int.from_bytes(boot[11:13], "little") * boot[13]
    raw = struct.unpack("b", boot[0x40:0x41])[0]
    record = cluster * raw if raw > 0 else 1 << -raw
    return (
        cluster,
        record,
        int.from_bytes(boot[0x30:0x38], "little"),
        int.from_bytes(boot[0x38:0x40], "little"),
    )


def volume_flags_forced(image: Path) -> int:
    """The volume flags as ntfsinfo (ntfs-3g) reads them (forced: it refuses a dirty volume)."""
    found = re.search(r"Volume Flags: 0x([0-9a-fA-F]+)", _ntfsinfo(image, "-f", "-m"))
    assert found, "ntfsinfo printed no volume flags"
    return int(found.group(1), 16)


def set_dirty_flag(image: Path) -> None:
    """VOLUME_IS_DIRTY in $Volume's $VOLUME_INFORMATION, in the MFT and its mirror alike."""
    cluster, record, mft, mirror = _geometry(image)
    data = bytearray(image.read_bytes())
    for base in (mft * cluster + 3 * record, mirror * cluster + 3 * record):
        position = int.from_bytes(data[base + 0x14 : base + 0x16], "little")
        while True:
            kind = int.from_bytes(data[base + position : base + position + 4], "little")
            length = int.from_bytes(data[base + position + 4 : base + position + 8], "little")
            assert kind != 0xFFFFFFFF and length, "no $VOLUME_INFORMATION in record 3"
            if kind == 0x70:
                value = (
                    base
                    + position
                    + int.from_bytes(data[base + position + 0x14 : base + position + 0x16], "little")
                )
                data[value + 10] |= 0x01
                break
            position += length
    image.write_bytes(bytes(data))


def logfile_offset(image: Path) -> int:
    """Byte offset of $LogFile's first cluster (its first restart page), from ntfsinfo's run list."""
    cluster, _, _, _ = _geometry(image)
    text = _ntfsinfo(image, "-v", "-i", "2")
    found = re.search(
        r"\$DATA \(0x80\).*?Runlist:\s+VCN\s+LCN\s+Length\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", text, re.S
    )
    assert found, text[-2000:]
    return int(found.group(1), 16) * cluster


def restart_page(in_use_client: bool, clean_flag: bool) -> bytes:
    """A version 1.1 restart page of 4096 bytes with one log client "NTFS"."""
    page = bytearray(4096)
    usa_offset, usa_count, area_offset = 0x1E, 4096 // 512 + 1, 0x30
    struct.pack_into("<4sHHQIIHhh", page, 0, b"RSTR", usa_offset, usa_count, 0, 4096, 4096, area_offset, 1, 1)
    client_array = 0x30
    area_length = client_array + 0xA0
    struct.pack_into(
        "<QHHHHIHHqIHHII", page, area_offset,
        0x100000,                            # current LSN
        1,                                   # log clients
        0xFFFF if in_use_client else 0,      # free list
        0 if in_use_client else 0xFFFF,      # in-use list
        0x0002 if clean_flag else 0,         # flags: RESTART_VOLUME_IS_CLEAN
        45,                                  # sequence number bits: 67 - bits of the file size
        area_length, client_array,
        2 << 20,                             # file size
        0, 0x30, 0x40, 1, 0,
    )  # fmt: skip
    client = area_offset + client_array
    struct.pack_into("<QQHHH6xI", page, client, 0x100000, 0x100000, 0xFFFF, 0xFFFF, 1, 8)
    page[client + 0x20 : client + 0x28] = "NTFS".encode("utf-16-le")
    usn = b"\x01\x00"
    page[usa_offset : usa_offset + 2] = usn
    for i in range(1, usa_count):
        end = i * 512
        page[usa_offset + 2 * i : usa_offset + 2 * i + 2] = page[end - 2 : end]
        page[end - 2 : end] = usn
    return bytes(page)


def set_unclean_logfile(image: Path) -> None:
    """Both restart pages say a client is in use and the volume is not clean: Windows' state after
    a pull without "Safely remove"."""
    offset = logfile_offset(image)
    page = restart_page(in_use_client=True, clean_flag=False)
    with image.open("r+b") as f:
        for copy in (0, 4096):
            f.seek(offset + copy)
            f.write(page)
