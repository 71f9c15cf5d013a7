"""A phone in memory, behind the same interface as the real backend: for unit tests and the demo.

A ``FakePhone`` holds storages of folders and files (bytes); its faults are what phones do: it can
be locked (no storage, or an iPhone's placeholder), be unplugged after N calls, lose an object
between listing and reading, report a size its bytes do not have, or refuse partial reads. It
counts the calls and bytes read, and it has no way to be written to.

Example::

    >>> phone = FakePhone({"Internal shared storage": {"DCIM/Camera/IMG_1.jpg": b"x" * 5000}})
    >>> backend = FakePhoneBackend({"usb:001,004": phone})
    >>> with backend.open("usb:001,004") as session:
    ...     [s.description for s in session.storages()], session.files("/store_00010001/DCIM/Camera")
    (['Internal shared storage'], [PhoneFile(name='IMG_1.jpg', size=5000, problem=None)])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.phones.camera import (
    DUMMY_STORAGE_ID,
    FoundPhone,
    ObjectGone,
    PhoneFile,
    PhoneGone,
    PhoneReadError,
    Storage,
    join,
)


@dataclass
class FakePhone:
    """``storages`` maps a description to ``{relative path: bytes}`` (folders are implied by the
    paths; an entry ending in ``/`` is an empty folder)."""

    storages: Mapping[str, Mapping[str, bytes]]
    model: str = "Fake Phone"
    locked: bool = False  # no storage at all (Android locked, or MTP not chosen)
    untrusted: bool = False  # only the iPhone's placeholder storage
    partial_reads: bool = True
    gone_after_calls: int | None = None  # unplugged after this many calls
    vanish: set[str] = field(default_factory=set)  # full paths listed but gone when read
    reported_sizes: dict[str, int] = field(default_factory=dict)  # full path -> size the phone claims
    no_details: set[str] = field(default_factory=set)  # full paths listed whose details fail
    unlistable: set[str] = field(default_factory=set)  # folders whose files cannot be listed
    calls: int = 0
    bytes_read: int = 0
    reads: list[tuple[str, int, int]] = field(default_factory=list)
    unplugged: bool = False

    def folder_of(self, index: int) -> str:
        return f"/store_{0x00010001 + index * 0x10000:08x}"

    def tree(self) -> dict[str, dict[str, bytes] | None]:
        """Every folder path -> its files (None for the folder markers)."""
        folders: dict[str, dict[str, bytes] | None] = {}
        for index, content in enumerate(self.storages.values()):
            top = self.folder_of(index)
            folders.setdefault(top, {})
            for relative, data in content.items():
                parts = relative.strip("/").split("/")
                is_folder = relative.endswith("/")
                names = parts if is_folder else parts[:-1]
                path = top
                for name in names:
                    path = join(path, name)
                    folders.setdefault(path, {})
                if not is_folder:
                    files = folders[path]
                    assert files is not None
                    files[parts[-1]] = data
        return folders


class FakeSession:
    def __init__(self, phone: FakePhone) -> None:
        self.phone = phone
        self.partial_reads = phone.partial_reads
        self.tree = phone.tree()
        self.closed = False
        self.fetched = ""

    def _call(self, subject: str) -> None:
        phone = self.phone
        phone.calls += 1
        if phone.gone_after_calls is not None and phone.calls > phone.gone_after_calls:
            phone.unplugged = True
        if phone.unplugged or self.closed:
            raise PhoneGone(subject, "the phone is not connected any more")

    def storages(self) -> list[Storage]:
        self._call(self.phone.model)
        if self.phone.locked:
            return []
        if self.phone.untrusted:
            return [Storage(f"/store_{DUMMY_STORAGE_ID:08x}", "", DUMMY_STORAGE_ID)]
        return [
            Storage(self.phone.folder_of(i), name, 0x00010001 + i * 0x10000, 64 << 30, 16 << 30)
            for i, name in enumerate(self.phone.storages)
        ]

    def folders(self, folder: str) -> list[str]:
        self._call(folder)
        if folder not in self.tree:
            raise ObjectGone(folder, "no such folder")
        prefix = folder.rstrip("/") + "/"
        return sorted(
            {p[len(prefix) :] for p in self.tree if p.startswith(prefix) and "/" not in p[len(prefix) :]}
        )

    def files(self, folder: str) -> list[PhoneFile]:
        self._call(folder)
        files = self.tree.get(folder)
        if files is None:
            raise ObjectGone(folder, "no such folder")
        if folder in self.phone.unlistable:
            raise PhoneReadError(folder, "the phone refused the listing")
        return [
            PhoneFile(name, 0, "the phone does not say how large it is")
            if join(folder, name) in self.phone.no_details
            else PhoneFile(name, self.phone.reported_sizes.get(join(folder, name), len(data)))
            for name, data in files.items()
        ]

    def read(self, folder: str, name: str, offset: int, length: int) -> bytes:
        path = join(folder, name)
        self._call(path)
        files = self.tree.get(folder) or {}
        if path in self.phone.vanish or name not in files:
            raise ObjectGone(path, "no such file")
        data = files[name]
        if not self.partial_reads and self.fetched != path:  # the whole file crosses the cable once
            self.fetched = path
            self.phone.bytes_read += len(data)
            self.phone.reads.append((path, 0, len(data)))
        piece = data[offset : offset + length]
        if self.partial_reads:
            self.phone.bytes_read += len(piece)
            self.phone.reads.append((path, offset, length))
        return piece

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakePhoneBackend:
    """Phones by port; ``plug``/``unplug`` change what ``detect`` finds."""

    def __init__(self, phones: Mapping[str, FakePhone] | None = None) -> None:
        self.phones: dict[str, FakePhone] = dict(phones or {})
        self.opened: list[str] = []

    def detect(self) -> list[FoundPhone]:
        return [FoundPhone(port, p.model) for port, p in self.phones.items() if not p.unplugged]

    def open(self, port: str) -> FakeSession:
        phone = self.phones.get(port)
        if phone is None or phone.unplugged:
            raise PhoneGone(port, "no phone at this port")
        self.opened.append(port)
        return FakeSession(phone)
