"""Synthetic phone trees: folders laid out like an Android phone's shared storage, for QEMU's usb-mtp
to export as a phone (``Guest.plug_phone``). Random bytes and generated pictures only, never real
material. ``snapshot`` fingerprints a tree (content, size, mode, mtime of every entry) so that a test
can show nothing was written to the "phone".

usb-mtp (QEMU 7.2) stalls any bulk-in packet shorter than an MTP container header (12 bytes), also
the last packet of a data phase, and libgphoto2 reads the short end of a data phase on its own
(``camlibs/ptp2/usb.c``: "read all but the last short packet"). A data phase of more than 1,024
bytes whose length is 1-11 bytes past a multiple of 512 therefore fails with "I/O problem" and
leaves the virtual phone wedged (every later command stalls) until it is plugged again. Real
phones have no such rule. What reaches such a length here:

* a read that ends at the end of a file: the sample digest's last read and a whole small file
  (data phase 12 + 4,096 + size % 4,096, or 12 + size) and a whole-file read's last range: a file
  of ``size % 512`` in 501..511 (``stalls_usb_mtp``);
* listing a folder of n entries (GetObjectHandles: 12 + 4 + 4n bytes): n >= 253 with n % 128 in
  125, 126.

The generators keep clear of both (sizes moved up by 11 bytes, a folder given one or two more
files), so that a scan ends because of what the kiosk does, not because of the emulator;
``stalls_usb_mtp`` also makes a phone that stops answering mid-scan on purpose.

Example::

    tree = phone_tree(tmp / "phone", random.Random(1), files=300, known={"DCIM/Camera/IMG_0001.jpg": data})
    before = snapshot(tree.root)
    ...  # plug, scan, unplug
    assert snapshot(tree.root) == before
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent.demo.pictures import generated_picture

# (folder, name pattern, share of the files, size range in bytes): what a phone's storage holds most of
LAYOUT = (
    ("DCIM/Camera", "IMG_2024{n:04d}_{t:06d}.jpg", 0.30, (40_000, 900_000)),
    ("DCIM/Screenshots", "Screenshot_2024{n:04d}-{t:06d}.png", 0.06, (20_000, 300_000)),
    ("WhatsApp/Media/WhatsApp Images", "IMG-2024{n:04d}-WA{t:04d}.jpg", 0.25, (10_000, 250_000)),
    ("WhatsApp/Media/WhatsApp Images/Sent", "IMG-2024{n:04d}-WA{t:04d}.jpg", 0.05, (10_000, 250_000)),
    ("WhatsApp/Media/WhatsApp Video", "VID-2024{n:04d}-WA{t:04d}.mp4", 0.02, (200_000, 2_000_000)),
    ("Download", "download_{n:04d}.pdf", 0.05, (2_000, 400_000)),
    ("Pictures", "picture_{n:04d}.png", 0.04, (5_000, 200_000)),
    ("Android/media/com.example.chat/cache", "c{n:05d}.bin", 0.23, (100, 12_000)),
)
STALL_SIZES = range(501, 512)  # size % 512 that makes usb-mtp stall a read to the end of the file
STALL_ENTRIES = (125, 126)  # entries % 128 of a folder (from 253 on) that make its listing stall


def stalls_usb_mtp(size: int) -> bool:
    """A file of ``size`` bytes wedges usb-mtp when it is read to its end (see the module text)."""
    return size > 1012 and size % 512 in STALL_SIZES


def listing_stalls_usb_mtp(entries: int) -> bool:
    """Listing a folder of ``entries`` files and subfolders wedges usb-mtp."""
    return entries >= 253 and entries % 128 in STALL_ENTRIES


def clear_size(size: int) -> int:
    """``size``, or the next size that usb-mtp reads to the end."""
    return size + 11 if stalls_usb_mtp(size) else size


@dataclass
class PhoneTree:
    """A generated tree: ``files`` maps each relative path to its size; ``known`` lists the ones that
    hold a known picture (as given)."""

    root: Path
    files: dict[str, int] = field(default_factory=dict)
    known: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _write(tree: PhoneTree, relative: str, data: bytes) -> None:
    path = tree.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    tree.files[relative] = len(data)


def _add_known(tree: PhoneTree, known: dict[str, bytes] | None) -> None:
    for relative, data in (known or {}).items():
        if stalls_usb_mtp(len(data)):
            raise ValueError(f"{relative}: {len(data)} bytes would wedge usb-mtp (stalls_usb_mtp)")
        _write(tree, relative, data)
        tree.known.append(relative)


def entries_per_folder(tree: PhoneTree) -> Counter[str]:
    """Files and subfolders in each folder of the tree (``.`` is the top)."""
    entries: Counter[str] = Counter()
    folders: set[Path] = set()
    for relative in tree.files:
        parent = Path(relative).parent
        entries[parent.as_posix()] += 1
        while parent != Path("."):
            folders.add(parent)
            parent = parent.parent
    for folder in folders:
        entries[folder.parent.as_posix()] += 1
    return entries


def _even_out_folders(tree: PhoneTree, rng: random.Random) -> None:
    """One or two more small files in any folder whose listing would wedge usb-mtp."""
    for folder, count in entries_per_folder(tree).items():
        extra = 0
        while listing_stalls_usb_mtp(count + extra):
            extra += 1
        for number in range(extra):
            _write(tree, (Path(folder) / f"filler_{number}.bin").as_posix(), rng.randbytes(64))


def phone_tree(
    root: Path,
    rng: random.Random,
    files: int = 300,
    known: dict[str, bytes] | None = None,
    scale: float = 1.0,
    pictures: float = 0.1,
) -> PhoneTree:
    """About ``files`` files in the folders of ``LAYOUT`` (sizes times ``scale``); a share
    ``pictures`` of the image files are generated PNG pictures, the rest random bytes. ``known``
    (relative path -> bytes) is written as given, on top (ValueError for a size that would wedge
    usb-mtp)."""
    tree = PhoneTree(root)
    root.mkdir(parents=True, exist_ok=True)
    for folder, pattern, share, (low, high) in LAYOUT:
        for n in range(max(1, round(files * share))):
            name = pattern.format(n=n, t=rng.randrange(10_000, 1_000_000) % 10_000 if "WA" in pattern else n)
            relative = f"{folder}/{name}"
            data = b""
            if name.endswith((".jpg", ".png")) and rng.random() < pictures:
                while not data or stalls_usb_mtp(len(data)):
                    data = generated_picture(rng, 64, 48)
            else:
                data = rng.randbytes(clear_size(max(1, int(rng.randrange(low, high) * scale))))
            _write(tree, relative, data)
    _add_known(tree, known)
    _even_out_folders(tree, rng)
    return tree


def sized_tree(
    root: Path, rng: random.Random, files: int, total_bytes: int, known: dict[str, bytes] | None = None
) -> PhoneTree:
    """``files`` files of random bytes that add up to about ``total_bytes``, in the folders of
    ``LAYOUT`` (for benchmarks: 2,000 files / 1 GB). Sizes vary around the mean (0.1x to 1.9x).
    The bytes come from ``os.urandom`` (fast; the tree is not reproducible, its layout is)."""
    tree = PhoneTree(root)
    root.mkdir(parents=True, exist_ok=True)
    mean = max(1, total_bytes // max(1, files))
    weights = [share for _, _, share, _ in LAYOUT]
    counts = [0] * len(LAYOUT)
    for _ in range(files):
        (index,) = rng.choices(range(len(LAYOUT)), weights)
        folder, pattern, _, _ = LAYOUT[index]
        counts[index] += 1
        name = pattern.format(n=counts[index], t=counts[index])
        size = clear_size(max(1, int(mean * rng.uniform(0.1, 1.9))))
        _write(tree, f"{folder}/{name}", os.urandom(size))
    _add_known(tree, known)
    _even_out_folders(tree, rng)
    return tree


def file_digest(path: Path) -> str:
    """sha256 over a file's data extents and where they start (SEEK_DATA / SEEK_HOLE) and its
    size: its whole content (holes read as zeros) without reading the holes of a sparse 5 GiB
    "video"."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:  # only a hole from here to the end
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            digest.update(start.to_bytes(8, "little"))
            f.seek(start)
            while start < end and (chunk := f.read(min(4 << 20, end - start))):
                digest.update(chunk)
                start += len(chunk)
            offset = end
        digest.update(size.to_bytes(8, "little"))
    return digest.hexdigest()


def snapshot(root: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every entry under ``root`` and ``root`` itself (``./``): (a file's content digest, ``dir``,
    ``link:target`` or ``other``; size; mode; mtime in ns). Folders end with ``/``. Equal snapshots:
    nothing was added, removed, renamed, written, truncated, chmod'ed or touched. Access times are
    left out (reading changes them)."""
    entries: dict[str, tuple[str, int, int, int]] = {}
    info = root.lstat()
    entries["./"] = ("dir", 0, info.st_mode, info.st_mtime_ns)
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names) + [f"{d}/" for d in subfolders]:
            path = Path(folder) / name.rstrip("/")
            relative = path.relative_to(root).as_posix() + ("/" if name.endswith("/") else "")
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                kind = "dir"
            elif stat.S_ISREG(info.st_mode):
                kind = file_digest(path)
            elif stat.S_ISLNK(info.st_mode):
                kind = f"link:{os.readlink(path)}"
            else:
                kind = "other"
            entries[relative] = (kind, 0 if kind == "dir" else info.st_size, info.st_mode, info.st_mtime_ns)
    return entries
