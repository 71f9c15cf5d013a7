"""The partition table reader against a simple, independent model of what a table describes.

The invariant behind the kiosk's green "no match": whatever byte range a table entry describes is
either returned as a partition (exactly, or clipped at the end of the device with a problem) or a
problem is recorded. The model below lists what MBR, EBR chains and GPT describe, without any of the
reader's bounds, numbering or messages; the tests build tables (valid ones, then damaged, mutated and
re-signed) and check the reader against it: it never raises, never returns a partition outside the
device, and with no problem recorded it returns every described range.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.devices.partitions import PartitionTable, read_partition_table

SIGNATURE = b"\x55\xaa"
EXTENDED = (0x05, 0x0F, 0x85)
LINUX = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def le(data: bytes) -> int:
    return int.from_bytes(data, "little")


def slots(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(status, type, start, sectors) of the four entries at 446."""
    raw = [sector[446 + 16 * i : 462 + 16 * i] for i in range(4)]
    return [(e[0], e[4], le(e[8:12]), le(e[12:16])) for e in raw]


# --- the model -----------------------------------------------------------------------------------


@dataclass
class Described:
    ranges: set[tuple[int, int]] = field(default_factory=set)  # (start byte, size in bytes)
    unreadable: list[str] = field(default_factory=list)  # described, but cannot be a partition


def is_mbr(sector: bytes) -> bool:
    """An MBR: the signature, no volume boot sector's OEM name, boot flags 0 or 0x80."""
    return (
        len(sector) >= 512
        and sector[510:512] == SIGNATURE
        and sector[3:11] not in (b"NTFS    ", b"EXFAT   ")
        and all(status in (0, 0x80) for status, _, _, _ in slots(sector))
    )


def gpt_entries(disk: bytes, lba: int, sector_size: int) -> list[tuple[bytes, int, int]] | None:
    """The (type, first, last) entries of a GPT header at ``lba`` whose checksums hold."""
    header = disk[lba * sector_size : (lba + 1) * sector_size]
    if len(header) < 92 or header[0:8] != b"EFI PART":
        return None
    size = le(header[12:16])
    if not 92 <= size <= len(header):
        return None
    if zlib.crc32(header[:16] + bytes(4) + header[20:size]) != le(header[16:20]):
        return None
    start, count, entry_size = le(header[72:80]) * sector_size, le(header[80:84]), le(header[84:88])
    if entry_size < 128 or count == 0 or start + count * entry_size > len(disk):
        return None
    array = disk[start : start + count * entry_size]
    if zlib.crc32(array) != le(header[88:92]):
        return None
    entries = [array[i * entry_size : (i + 1) * entry_size] for i in range(count)]
    return [(e[0:16], le(e[32:40]), le(e[40:48])) for e in entries]


def follow_chain(disk: bytes, extended_lba: int, sector_size: int, found: Described) -> None:
    """Every record of the chain: its data entries (relative to it) are ranges, its first link
    (relative to the extended partition) leads on, a second link or a missing record is unreadable."""
    this, seen = extended_lba, set()
    while this not in seen:
        seen.add(this)
        sector = disk[this * sector_size : this * sector_size + 512]
        if len(sector) < 512 or sector[510:512] != SIGNATURE:
            found.unreadable.append(f"extended boot record at {this}")
            return
        link = None
        for _, kind, start, sectors in slots(sector):
            if sectors and kind in EXTENDED:
                if link is not None:
                    found.unreadable.append(f"second link in the record at {this}")
                link = start if link is None else link
            elif sectors:
                found.ranges.add(((this + start) * sector_size, sectors * sector_size))
        if not link:
            return
        this = extended_lba + link


def describe(disk: bytes, sector_size: int) -> Described:
    """What the tables on ``disk`` describe. The definitions it shares with the reader: sector 0
    is an MBR when signed, not a volume's boot sector and with boot flags 0 or 0x80; a GPT is a
    header with good checksums at LBA 1, else at the last LBA; an MBR beside a GPT counts sectors
    of the GPT's size; type 0xee stands for the GPT. Everything else (any type with sectors is a
    range) is the tables' own word."""
    found = Described()
    mbr = slots(disk[:512]) if is_mbr(disk[:512]) else []
    protective = any(kind == 0xEE for _, kind, _, _ in mbr)
    plain = not protective and any(sectors for _, _, _, sectors in mbr)
    gpt_sector_size = 0
    for size in (512, 4096):
        total = len(disk) // size
        entries = gpt_entries(disk, 1, size) if total >= 3 else None
        if entries is None and total >= 3:
            entries = gpt_entries(disk, total - 1, size)
        for guid, first, last in entries or []:
            if guid == bytes(16):
                continue
            if last < first:
                found.unreadable.append(f"GPT entry {first}..{last}")
            else:
                found.ranges.add((first * size, (last - first + 1) * size))
        gpt_sector_size = gpt_sector_size or (size if entries is not None else 0)
    mbr_sector_size = gpt_sector_size if gpt_sector_size and not plain else sector_size
    for _, kind, start, sectors in mbr:
        if kind == 0xEE:
            if not gpt_sector_size:
                found.unreadable.append("protective entry without a GPT")
        elif sectors and kind in EXTENDED:
            follow_chain(disk, start, mbr_sector_size, found)
        elif sectors:
            found.ranges.add((start * mbr_sector_size, sectors * mbr_sector_size))
    return found


class Device(bytes):
    """A device's content; shown by where it is not zero, not byte by byte."""

    def __repr__(self) -> str:
        pieces: list[str] = []
        offset = 0
        while (
            len(pieces) < 12 and (offset := next((i for i in range(offset, len(self)) if self[i]), -1)) >= 0
        ):
            end = offset
            while end < len(self) and any(self[end : end + 16]):
                end += 16
            pieces.append(f"{offset}: {self[offset:end].hex()}")
            offset = end
        return f"Device({len(self)} bytes; " + "; ".join(pieces) + ")"


def check(disk: bytes, sector_size: int) -> PartitionTable:
    """The invariant, for one device whose whole content is ``disk``."""
    device_size = len(disk)
    told = (sector_size,) if sector_size != 512 else ()  # 512 is the default
    table = read_partition_table(lambda offset, n: disk[offset : offset + n], device_size, *told)
    numbers = [p.number for p in table.partitions]
    assert len(set(numbers)) == len(numbers), numbers
    for part in table.partitions:
        assert part.start >= 0 and part.size > 0 and part.start + part.size <= device_size, part
    assert all(problem and "\n" not in problem for problem in table.problems)
    model = describe(disk, sector_size)
    returned = {(p.start, p.size) for p in table.partitions}
    if table.scheme == "none":
        assert returned == ({(0, device_size)} if device_size else set())
    else:
        clipped = {(start, min(size, device_size - start)) for start, size in model.ranges}
        assert returned <= clipped, (returned - clipped, table)
    if not table.problems:
        assert model.unreadable == [], (model.unreadable, table)
        assert model.ranges <= returned, (model.ranges - returned, table)
    return table


# --- generated tables ----------------------------------------------------------------------------

KINDS = st.sampled_from([0x00, 0x07, 0x0C, 0x83, 0xEF, 0x05, 0x0F, 0x85, 0xEE]) | st.integers(0, 255)
SOUND_KINDS = st.sampled_from([0x00, 0x07, 0x0C, 0x83, *EXTENDED])
DATA_KINDS = st.sampled_from([0x00, 0x07, 0x0C, 0x83]) | st.integers(0, 255).filter(
    lambda k: k not in EXTENDED
)
RECORD_DATA = st.lists(st.tuples(DATA_KINDS, st.integers(1, 4), st.integers(1, 8)), max_size=2)
EXTENDED_KINDS = st.sampled_from(EXTENDED)
SECTOR_SIZES = st.sampled_from([512, 4096])
SOUND_GUIDS = st.just(LINUX) | st.binary(min_size=16, max_size=16).filter(any)


def entry(kind: int, start: int, sectors: int, status: int = 0) -> bytes:
    start, sectors = start % (1 << 32), sectors % (1 << 32)
    return (
        bytes([status, 0, 0, 0, kind, 0, 0, 0]) + start.to_bytes(4, "little") + sectors.to_bytes(4, "little")
    )


def put_slots(disk: bytearray, offset: int, entries: list[bytes]) -> list[int]:
    """Write an MBR-like sector at ``offset`` (if it fits); its byte offsets worth mutating."""
    if offset + 512 > len(disk):
        return []
    for i, raw in enumerate(entries[:4]):
        disk[offset + 446 + 16 * i : offset + 462 + 16 * i] = raw
    disk[offset + 510 : offset + 512] = SIGNATURE
    return list(range(offset + 446, offset + 512))


@st.composite
def mbr_disks(draw: st.DrawFn) -> tuple[Device, int]:
    """A device with an MBR and maybe logical chains: mostly a sound layout, sometimes wild values,
    stray entries and links anywhere, then a few bytes of the records changed."""
    sector_size = draw(SECTOR_SIZES)
    sectors = draw(st.integers(16, 600))
    disk = bytearray(sectors * sector_size + draw(st.sampled_from([0, 0, 700])))
    wild = st.integers(0, sectors * 3 // 2)
    raws, chains, cursor = [], [], 1
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(KINDS)
        if draw(st.integers(0, 7)) == 0:
            start, size = draw(wild), draw(wild)
        else:
            start = cursor + draw(st.integers(0, 4))
            size = draw(st.integers(1, max(1, (sectors - start) // 2)))
        cursor = start + size
        raws.append(entry(kind, start, size, draw(st.sampled_from([0, 0, 0x80]))))
        chains += [start] if kind in EXTENDED else []
    hot = put_slots(disk, 0, raws)
    for start in chains:
        records = draw(st.integers(0, 6))
        for k in range(records):
            record = [entry(kind, offset, size) for kind, offset, size in draw(RECORD_DATA)]
            if k + 1 < records or draw(st.integers(0, 5)) == 0:  # sometimes a link to nothing
                link = draw(
                    st.sampled_from([16 * (k + 1)] * 4 + [16 * k, 0, draw(wild)])
                )  # on, loop, anywhere
                record.insert(draw(st.integers(0, len(record))), entry(draw(EXTENDED_KINDS), link, 16))
            if draw(st.integers(0, 7)) == 0:  # a second link, or data Linux may take for garbage
                record.append(
                    entry(draw(st.sampled_from([0x83, *EXTENDED])), draw(wild), draw(st.integers(1, 20)))
                )
            hot += put_slots(disk, (start + 16 * k) * sector_size, record)
    for where, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=2)):
        if hot:
            disk[hot[where % len(hot)]] = value
    return Device(disk), draw(st.sampled_from([sector_size, sector_size, 512]))


MBR_FAULTS = [
    "none", "link past end", "loop", "no signature", "second link", "outside", "extended past end",
    "primary past end", "primary clipped", "type zero", "protective", "any field",
]  # fmt: skip


@st.composite
def mbr_with_one_fault(draw: st.DrawFn, fault: str) -> tuple[Device, int]:
    """A sound MBR layout (primaries, chains of records 16 sectors apart) with one of MBR_FAULTS,
    so that this fault is the only thing a problem can be recorded for."""
    sector_size = draw(SECTOR_SIZES)
    sectors = draw(st.integers(64, 600))
    disk = bytearray(sectors * sector_size + draw(st.sampled_from([0, 0, 700])))
    primaries: list[tuple[int, int, int, int, int]] = []  # slot, type, start, sectors, records
    cursor = 1
    for slot in range(draw(st.integers(1, 4))):
        if cursor + 20 >= sectors:
            break
        kind, start = draw(SOUND_KINDS), cursor + draw(st.integers(0, 4))
        records = min(draw(st.integers(1, 6)), (sectors - start) // 16) if kind in EXTENDED else 0
        kind = 0x83 if kind in EXTENDED and not records else kind
        size = max(draw(st.integers(1, max(1, (sectors - start) // 3))), 16 * records)
        disk[446 + 16 * slot : 462 + 16 * slot] = entry(kind, start, size)
        primaries.append((slot, kind, start, size, records))
        cursor = start + size
    disk[510:512] = SIGNATURE
    tables: list[tuple[int, int]] = []  # byte offset of each record, the size its entries must fit in
    links: list[tuple[int, int]] = []  # byte offset of each link entry, the number of its record
    for _, _, start, size, records in primaries:
        for k in range(records):
            record = [entry(kind, offset, size) for kind, offset, size in draw(RECORD_DATA)]
            at = (start + 16 * k) * sector_size
            if k + 1 < records:
                links.append((at + 446 + 16 * len(record), k))
                record.append(entry(draw(EXTENDED_KINDS), 16 * (k + 1), 16))
            put_slots(disk, at, record)
            tables.append((at, size if k == 0 else 16))

    def field(at: int, value: int) -> None:
        disk[at : at + 4] = (value % (1 << 32)).to_bytes(4, "little")

    data_slots = [slot for slot, kind, _, _, _ in primaries if kind not in EXTENDED]
    extended_slots = [slot for slot, kind, _, _, _ in primaries if kind in EXTENDED]
    loops = [(at, k) for at, k in links if k >= 1]
    if fault == "link past end" and links:
        field(draw(st.sampled_from(links))[0] + 8, 2 * sectors)
    elif fault == "loop" and loops:
        at, k = draw(st.sampled_from(loops))
        field(at + 8, 16 * draw(st.integers(1, k)))
    elif fault == "no signature" and tables:
        at = draw(st.sampled_from(tables))[0]
        disk[at + 510 : at + 512] = bytes(2)
    elif fault == "second link" and links:
        at = draw(st.sampled_from(links))[0]
        at -= at % sector_size
        disk[at + 494 : at + 510] = entry(0x05, draw(st.integers(0, 2 * sectors)), 16)
    elif fault == "outside" and tables:
        at, room = draw(st.sampled_from(tables))
        disk[at + 494 : at + 510] = entry(0x83, room, 4)  # slot 4: Linux takes it for garbage
    elif fault == "extended past end" and extended_slots:
        field(446 + 16 * draw(st.sampled_from(extended_slots)) + 8, 2 * sectors)
    elif fault == "primary past end" and primaries:
        field(446 + 16 * draw(st.sampled_from(primaries))[0] + 8, 2 * sectors)
    elif fault == "primary clipped" and data_slots:
        field(446 + 16 * draw(st.sampled_from(data_slots)) + 12, sectors)
    elif fault == "type zero" and data_slots:
        disk[446 + 16 * draw(st.sampled_from(data_slots)) + 4] = 0x00
    elif fault == "protective":
        disk[446 + 16 * draw(st.integers(0, 3)) + 4] = 0xEE
    elif fault == "any field":
        at = draw(st.sampled_from([0] + [at for at, _ in tables])) + 446 + 16 * draw(st.integers(0, 3))
        values = st.sampled_from([0, 1, 16, 32, sectors - 1, sectors, 2 * sectors, (1 << 32) - 1])
        where = draw(st.sampled_from([4, 8, 12]))
        if where == 4:
            disk[at + 4] = draw(st.sampled_from([0x00, 0x05, 0x0F, 0x83, 0xEE]))
        else:
            field(at + where, draw(values | st.integers(0, 2 * sectors)))
    return Device(disk), sector_size


def gpt_header(lba: int, alternate: int, array_lba: int, count: int, array: bytes | bytearray) -> bytearray:
    header = bytearray(92)
    header[0:8], header[8:12], header[12:16] = b"EFI PART", b"\x00\x00\x01\x00", (92).to_bytes(4, "little")
    header[24:32], header[32:40] = lba.to_bytes(8, "little"), alternate.to_bytes(8, "little")
    header[56:72] = uuid.UUID(int=lba).bytes_le
    header[72:80], header[80:84] = array_lba.to_bytes(8, "little"), count.to_bytes(4, "little")
    header[84:88], header[88:92] = (128).to_bytes(4, "little"), zlib.crc32(array).to_bytes(4, "little")
    header[16:20] = zlib.crc32(header).to_bytes(4, "little")
    return header


GPT_FAULTS = [
    "none", "zero primary", "damage primary", "damage primary array", "zero backup", "zero both",
    "damage both", "plain mbr", "no mbr", "hybrid copy", "hybrid other", "entry past end",
    "entry clipped", "entry reversed", "other sector size", "wiped start", "mbr over a wiped gpt",
    "volume over a wiped gpt",
]  # fmt: skip


@st.composite
def gpt_disks(draw: st.DrawFn, fault: str = "") -> tuple[Device, int]:
    """A GPT (either sector size) with protective, hybrid, plain or no MBR, headers intact, zeroed
    or damaged, entries mutated with and without signing them again. One fault: a sound GPT with
    exactly one ``fault`` of GPT_FAULTS."""
    one_fault = bool(fault)
    sector_size = draw(SECTOR_SIZES)
    count = draw(st.sampled_from([4, 32, 128, 200]))
    array_sectors = -(-count * 128 // sector_size)
    sectors = draw(st.integers(2 * array_sectors + 8, 2 * array_sectors + 300))
    disk = bytearray(sectors * sector_size + draw(st.sampled_from([0, 0, 1000])))
    total = len(disk) // sector_size
    usable = (2 + array_sectors, total - 2 - array_sectors)
    slot = st.integers(0, count - 1)
    if one_fault:
        entries = []
        for _ in range(draw(st.integers(0, 5))):
            first = draw(st.integers(*usable))
            entries.append(
                (draw(slot), draw(SOUND_GUIDS), first, draw(st.integers(1, usable[1] - first + 1)))
            )
        extra = {
            "entry past end": (2 * total, 3),
            "entry clipped": (usable[1], total),
            "entry reversed": (usable[0], -1),
        }
        entries += [(draw(slot), LINUX, *extra[fault])] if fault in extra else []
    else:
        lba = st.integers(0, sectors * 3 // 2)
        kinds = st.sampled_from([bytes(16), LINUX, LINUX]) | st.binary(min_size=16, max_size=16)
        entries = draw(st.lists(st.tuples(slot, kinds, lba, st.integers(-2, sectors)), max_size=6))

    def array_of(rows: list[tuple[int, bytes, int, int]]) -> bytearray:
        array = bytearray(count * 128)
        for number, kind, first, length in rows:
            row = (
                kind
                + bytes(16)
                + first.to_bytes(8, "little")
                + max(0, first + length - 1).to_bytes(8, "little")
            )
            array[number * 128 : number * 128 + 48] = row
        return array

    array = backup_array = array_of(entries)
    if not one_fault:
        for where, value in draw(
            st.lists(st.tuples(st.integers(0, 6 * 128 - 1), st.integers(0, 255)), max_size=3)
        ):
            array[where % len(array)] = value  # signed below: damage the checksums cannot see
        rows = st.tuples(slot, kinds, lba, st.integers(-2, sectors))
        backup_array = array_of(draw(st.lists(rows, max_size=3))) if draw(st.integers(0, 4)) == 0 else array
    states = {
        "zero primary": ("zeroed", "intact"), "damage primary": ("damaged", "intact"),
        "damage primary array": ("array damaged", "intact"), "zero backup": ("intact", "zeroed"),
        "zero both": ("zeroed", "zeroed"), "damage both": ("damaged", "array damaged"),
        "wiped start": ("zeroed", "intact"), "mbr over a wiped gpt": ("zeroed", "intact"),
        "volume over a wiped gpt": ("zeroed", "intact"),
    }.get(fault, ("intact", "intact"))  # fmt: skip
    copies = ((1, total - 1, 2, array), (total - 1, 1, total - 1 - array_sectors, backup_array))
    for (header_lba, alternate, array_lba, content), state in zip(copies, states, strict=True):
        if not one_fault:
            state = draw(st.sampled_from(["intact", "intact", "zeroed", "damaged", "array damaged"]))
        header = gpt_header(header_lba, alternate, array_lba, count, content)
        if state == "damaged":
            header[draw(st.integers(0, 91))] ^= 1 << draw(st.integers(0, 7))
        if state != "zeroed":
            disk[header_lba * sector_size : header_lba * sector_size + 92] = header
        disk[array_lba * sector_size : array_lba * sector_size + len(content)] = content
        if state == "array damaged":
            disk[array_lba * sector_size + draw(st.integers(0, len(content) - 1))] ^= 0x40
    mbrs = {
        "plain mbr": "plain",
        "no mbr": "none",
        "wiped start": "none",
        "hybrid copy": "hybrid",
        "hybrid other": "hybrid",
        "mbr over a wiped gpt": "plain",
        "volume over a wiped gpt": "volume",
    }
    mbr = (
        mbrs.get(fault, "protective")
        if one_fault
        else draw(st.sampled_from([*mbrs.values(), "protective"] * 2))
    )
    raws = [entry(0xEE, 1, total - 1)] if mbr in ("protective", "hybrid") else []
    if mbr in ("hybrid", "plain"):
        same = [entry(0x83, first, length) for _, _, first, length in entries if length > 0]
        raws += draw(st.lists(st.sampled_from(same), max_size=2)) if same else []
        other = st.tuples(KINDS, st.integers(0, total - 1), st.integers(1, total)) if not one_fault else None
        if other is not None and draw(st.booleans()):
            raws += [entry(*draw(other))]
        if fault in ("hybrid other", "plain mbr", "mbr over a wiped gpt"):
            raws += (
                [entry(0x0C, usable[0], 1)]
                if (usable[0], 1) not in [(f, z) for _, _, f, z in entries]
                else []
            )
    if mbr == "volume":  # a FAT boot sector: boot code where a table would be
        disk[0:11], disk[446], disk[510:512] = b"\xeb\x3c\x90mkfs.fat", 0x33, SIGNATURE
    elif mbr != "none":
        put_slots(disk, 0, raws)
    other_size = 4096 if sector_size == 512 else 512
    told = other_size if fault == "other sector size" else sector_size
    return Device(disk), told if one_fault else draw(st.sampled_from([sector_size, sector_size, 512]))


@FAST
@given(mbr_disks())
def test_mbr_tables_and_logical_chains(device: tuple[bytes, int]) -> None:
    check(*device)


@FAST
@given(gpt_disks())
def test_gpt_tables(device: tuple[bytes, int]) -> None:
    check(*device)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_mbr_tables_with_one_fault(data: st.DataObject) -> None:
    """Every fault in every example: each is the only one on its device, none is left untried."""
    for fault in MBR_FAULTS:
        check(*data.draw(mbr_with_one_fault(fault), label=fault))


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_gpt_tables_with_one_fault(data: st.DataObject) -> None:
    for fault in GPT_FAULTS:
        check(*data.draw(gpt_disks(fault), label=fault))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=512, max_size=512), st.binary(max_size=1536), st.sampled_from([512, 4096]))
def test_arbitrary_first_sectors(first: bytes, rest: bytes, sector_size: int) -> None:
    """Random bytes where an MBR would be, with a signature half the time, on a small device."""
    disk = bytearray(first + rest + bytes(8192))
    if first[0] & 1:
        disk[510:512] = SIGNATURE
        for i in range(4):
            disk[446 + 16 * i] &= 0x80
    check(Device(disk), sector_size)


def test_the_model_sees_what_a_plain_table_describes() -> None:
    """The model itself, on a table whose content is known."""
    disk = bytearray(1 << 20)
    put_slots(disk, 0, [entry(0x83, 100, 10), entry(0x05, 200, 50)])
    put_slots(disk, 200 * 512, [entry(0x07, 1, 5), entry(0x05, 20, 10)])
    put_slots(disk, 220 * 512, [entry(0x0C, 2, 3)])
    model = describe(bytes(disk), 512)
    assert model.ranges == {(100 * 512, 10 * 512), (201 * 512, 5 * 512), (222 * 512, 3 * 512)}
    assert model.unreadable == []
    table = check(bytes(disk), 512)
    assert [p.number for p in table.partitions] == [1, 5, 6] and table.problems == ()
