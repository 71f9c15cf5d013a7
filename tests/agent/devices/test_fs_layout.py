"""Where filesystems place file data (``fs_layout``): checked against real images made by the
filesystems' own tools (a file's bytes must start at ``origin + c * unit``), synthetic headers for
the types we cannot make here, and hostile bytes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.demo.images import PartitionSpec, make_filesystem, missing_tools
from agent.devices.fs_layout import FsLayout, read_layout


def image_reader(path: Path) -> tuple[bytes, int]:
    data = path.read_bytes()
    return data, len(data)


def layout_of(path: Path) -> FsLayout | None:
    data, size = image_reader(path)
    return read_layout(lambda offset, n: data[offset : offset + n], size)


def where(path: Path, content: bytes) -> int:
    """The offset of a file's content in an image (its first 64 bytes are random: unique)."""
    data = path.read_bytes()
    offset = data.find(content[:64])
    assert offset >= 0 and data.find(content[:64], offset + 1) == -1
    assert data[offset : offset + len(content)] == content, "stored contiguously"
    return offset


def assert_placed(layout: FsLayout | None, offset: int) -> None:
    assert layout is not None
    assert offset >= layout.data_start
    assert (offset - layout.origin) % layout.unit == 0, (offset, layout)


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("fat", "cluster_sectors", "size_mib", "kind"),
    [("12", 1, 2, "fat12"), ("16", 1, 24, "fat16"), ("16", 2, 32, "fat16"), ("16", 8, 64, "fat16"),
     ("32", 1, 64, "fat32"), ("32", 8, 300, "fat32")],
)  # fmt: skip
def test_fat_data_area_and_cluster_size(
    tmp_path: Path, fat: str, cluster_sectors: int, size_mib: int, kind: str
) -> None:
    if missing_tools(["vfat"]):
        pytest.skip("needs dosfstools and mtools")
    image = tmp_path / "fat.img"
    with image.open("wb") as f:
        f.truncate(size_mib << 20)
    run("mkfs.vfat", "-F", fat, "-s", str(cluster_sectors), "-S", "512", image)
    small, known = os.urandom(700), os.urandom(100_000)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "known.bin").write_bytes(known)
    run("mcopy", "-i", image, tmp_path / "small.bin", "::/small.bin")
    run("mcopy", "-i", image, tmp_path / "known.bin", "::/known.bin")
    layout = layout_of(image)
    assert layout is not None and layout.fs_type == kind and layout.unit == 512 * cluster_sectors
    assert layout.origin == layout.data_start
    for content in (small, known):
        assert_placed(layout, where(image, content))
    if cluster_sectors == 1:  # the known file follows a two-sector file: not on the data area's 4 KiB grid
        assert (where(image, known) - layout.origin) % 4096 != 0


@pytest.mark.root
@pytest.mark.parametrize("kind", ["exfat", "ntfs"])
def test_exfat_and_ntfs(tmp_path: Path, kind: str) -> None:
    if missing_tools([kind]):
        pytest.skip(f"needs the {kind} tools")
    known = os.urandom(200_000)
    image = tmp_path / f"{kind}.img"
    make_filesystem(
        PartitionSpec(kind, {"a.txt": b"x" * 3000, "DCIM/known.jpg": known}, size=16 << 20), image
    )
    layout = layout_of(image)
    assert layout is not None and layout.fs_type == kind
    assert layout.unit == 4096
    assert_placed(layout, where(image, known))
    if kind == "ntfs":
        assert layout.origin == 0
    else:
        assert layout.origin == layout.data_start > 0


@pytest.mark.parametrize("block", [1024, 2048, 4096])
def test_ext4_blocks(tmp_path: Path, block: int) -> None:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("needs mkfs.ext4")
    (tmp_path / "tree").mkdir()
    known = os.urandom(150_000)
    (tmp_path / "tree" / "small.txt").write_bytes(os.urandom(1500))
    (tmp_path / "tree" / "known.jpg").write_bytes(known)
    image = tmp_path / "ext4.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    run("mkfs.ext4", "-q", "-F", "-b", str(block), "-d", tmp_path / "tree", image)
    layout = layout_of(image)
    assert layout == FsLayout("ext", block, 0)
    assert_placed(layout, where(image, known))


def synthetic(size: int, at: int, header: bytes) -> bytes:
    data = bytearray(size)
    data[at : at + len(header)] = header
    return bytes(data)


def test_types_from_their_headers() -> None:
    size = 64 << 20
    xfs = synthetic(size, 0, b"XFSB" + (4096).to_bytes(4, "big"))
    apfs = synthetic(size, 32, b"NXSB" + (4096).to_bytes(4, "little"))
    hfs = synthetic(size, 1024, b"H+\x00\x04" + bytes(36) + (8192).to_bytes(4, "big"))
    f2fs = synthetic(size, 1024, (0xF2F52010).to_bytes(4, "little") + bytes(12) + (12).to_bytes(4, "little"))
    btrfs = synthetic(size, 0x10040, b"_BHRfS_M" + bytes(0x48) + (4096).to_bytes(4, "little"))
    cases = [(xfs, "xfs", 4096), (apfs, "apfs", 4096), (hfs, "hfsplus", 8192), (f2fs, "f2fs", 4096)]
    cases.append((btrfs, "btrfs", 4096))
    for data, kind, unit in cases:
        layout = read_layout(lambda offset, n, data=data: data[offset : offset + n], size)
        assert layout == FsLayout(kind, unit, 0), kind
    assert read_layout(lambda offset, n: bytes(n), size) is None


def test_ntfs_large_clusters_and_bad_values() -> None:
    boot = bytearray(512)
    boot[3:11] = b"NTFS    "
    boot[11:13] = (512).to_bytes(2, "little")
    boot[13] = 0xF4  # 2 ** 12 sectors: 2 MiB clusters
    layout = read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 1 << 30)
    assert layout == FsLayout("ntfs", 2 << 20, 0)
    boot[13] = 0
    assert read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 1 << 30) is None


def test_fat_fields_that_point_past_the_partition_give_no_layout() -> None:
    boot = bytearray(512)
    boot[0], boot[3:11], boot[13], boot[16] = 0xEB, b"mkfs.fat", 1, 2
    for at, value in ((11, 512), (14, 4), (17, 512), (19, 60000), (22, 200)):
        boot[at : at + 2] = value.to_bytes(2, "little")
    assert read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 60000 * 512) is not None
    assert read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 100 * 512) is None  # past the end
    boot[11:13] = (700).to_bytes(2, "little")  # not a power of two
    assert read_layout(lambda offset, n: bytes(boot[offset : offset + n]), 60000 * 512) is None


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=0, max_size=2048),
    st.integers(0, 1 << 40),
    st.sampled_from([b"", b"NTFS    ", b"EXFAT   "]),
)
def test_hostile_boot_sectors_never_raise(head: bytes, size: int, oem: bytes) -> None:
    data = bytearray(head.ljust(0x11000, b"\x00"))
    if oem:
        data[3:11] = oem
    data[0] = 0xEB if len(head) % 2 else data[0]
    layout = read_layout(lambda offset, n: bytes(data[offset : offset + n]), size)
    if layout is not None:
        assert layout.unit & (layout.unit - 1) == 0 and 512 <= layout.unit <= 1 << 26
        assert 0 <= layout.origin < size and layout.data_start < size
