"""Journal state read from superblocks built byte by byte (no root, no tools): HFS+ journals and
ext4 external journals, the cases the real-image tests cannot all build here."""

from __future__ import annotations

from typing import Literal

import pytest

from agent.devices.recovery import EXTERNAL_JOURNAL, ReadAt, needs_recovery, why_not_replayable

BLOCK = 4096


def reader(volume: bytearray) -> ReadAt:
    return lambda offset, n: bytes(volume[offset : offset + n])


def hfsplus(
    *,
    journaled: bool,
    unmounted: bool,
    start: int = 512,
    end: int = 512,
    order: Literal["big", "little"] = "big",
) -> bytearray:
    """A volume header (at 1024), a journal info block (block 2) and a journal header (block 3)."""
    volume = bytearray(8 * BLOCK)
    header = 1024
    volume[header : header + 2] = b"H+"
    volume[header + 2 : header + 4] = (4).to_bytes(2, "big")
    attributes = (1 << 13 if journaled else 0) | (1 << 8 if unmounted else 0)
    volume[header + 4 : header + 8] = attributes.to_bytes(4, "big")
    volume[header + 0x0C : header + 0x10] = (2).to_bytes(4, "big")  # journalInfoBlock
    volume[header + 0x28 : header + 0x2C] = BLOCK.to_bytes(4, "big")  # blockSize
    info = 2 * BLOCK
    volume[info : info + 4] = (1).to_bytes(4, "big")  # kJIJournalInFSMask
    volume[info + 0x24 : info + 0x2C] = (3 * BLOCK).to_bytes(8, "big")  # journal offset
    journal = 3 * BLOCK
    for at, value, size in ((0, 0x4A4E4C78, 4), (4, 0x12345678, 4), (8, start, 8), (16, end, 8)):
        volume[journal + at : journal + at + size] = value.to_bytes(size, order)
    return volume


@pytest.mark.parametrize("order", ["big", "little"])
def test_hfsplus_pulled_with_transactions_in_its_journal_needs_recovery(
    order: Literal["big", "little"],
) -> None:
    volume = hfsplus(journaled=True, unmounted=False, start=512, end=8192, order=order)
    reason = needs_recovery("hfsplus", reader(volume))
    assert reason and "journal holds transactions" in reason


def test_hfsplus_clean_or_with_an_empty_journal_needs_none() -> None:
    assert needs_recovery("hfsplus", reader(hfsplus(journaled=True, unmounted=True, end=8192))) == ""
    assert needs_recovery("hfsplus", reader(hfsplus(journaled=True, unmounted=False))) == ""
    assert needs_recovery("hfsplus", reader(hfsplus(journaled=False, unmounted=False))) == ""


def test_hfsplus_with_a_damaged_journal_or_header_is_never_taken_as_clean() -> None:
    volume = hfsplus(journaled=True, unmounted=False)
    volume[3 * BLOCK : 3 * BLOCK + 4] = b"\0\0\0\0"
    assert "journal header is damaged" in (needs_recovery("hfsplus", reader(volume)) or "")
    volume[2 * BLOCK : 2 * BLOCK + 4] = (2).to_bytes(4, "big")  # on another device
    assert "another device" in (needs_recovery("hfsplus", reader(volume)) or "")
    assert "unreadable" in (needs_recovery("hfsplus", reader(bytearray(4096))) or "")


def ext4(*, external: bool) -> bytearray:
    volume = bytearray(4096)
    sb = 1024
    volume[sb + 0x38 : sb + 0x3A] = (0xEF53).to_bytes(2, "little")
    volume[sb + 0x5C] = 0x04  # has_journal
    volume[sb + 0x60] = 0x04 | 0x02  # needs_recovery, filetype
    if external:
        volume[sb + 0xD0 : sb + 0xE0] = bytes(range(1, 17))  # s_journal_uuid
        volume[sb + 0xE4 : sb + 0xE8] = (0x0811).to_bytes(4, "little")  # s_journal_dev: sdb1
    else:
        volume[sb + 0xE0] = 8  # s_journal_inum
    return volume


def test_an_ext4_journal_on_another_device_needs_recovery_and_is_not_replayable() -> None:
    reason = needs_recovery("ext4", reader(ext4(external=True)))
    assert reason == EXTERNAL_JOURNAL and why_not_replayable(reason)
    internal = needs_recovery("ext4", reader(ext4(external=False)))
    assert internal and not why_not_replayable(internal)
