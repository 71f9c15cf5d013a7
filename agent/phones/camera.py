"""A phone as the scan sees it: storages, folders, files and byte ranges, read over MTP or PTP.

``PhoneBackend`` finds phones and opens a ``PhoneSession`` on one; the real backend is libgphoto2
(``agent.phones.gphoto``: its ptp2 driver speaks MTP and PTP), the fake one an in-memory tree
(``agent.phones.fake``). Nothing in this interface can write to a phone: there is no call that
creates, deletes or changes an object, captures, or sets a property.

Paths are the backend's folder paths (``/store_00010001/DCIM/Camera``); names are single entries.
A storage's ``folder`` is the top of its tree and ``description`` what the phone calls it
("Internal shared storage", "SD card"): reports show hits as ``description/DCIM/Camera/IMG_1.jpg``.

Errors: ``PhoneGone`` (unplugged, or the session died: nothing more can be read),
``ObjectGone`` (an object listed a moment ago is not there), ``PhoneReadError`` (any other failure
of one call, naming the object). All are ``FieldtriageError``: one printable line each.

Example::

    backend = GphotoBackend()
    for found in backend.detect():
        with backend.open(found.port) as session:
            for storage in session.storages():
                print(storage.description, session.folders(storage.folder))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from filters.errors import FieldtriageError

DUMMY_STORAGE_ID = 0xFEEDFACE  # an untrusted iPhone shows only this storage (or none)
READ_CHUNK = 1 << 20  # the largest range asked for in one call when a file is read whole


class PhoneError(FieldtriageError):
    """Something a phone did: ``subject`` names the phone or the object."""


class PhoneGone(PhoneError):
    """The phone was unplugged, locked its session, or stopped answering."""


class ObjectGone(PhoneError):
    """An object (file or folder) that was listed is not there any more."""


class PhoneReadError(PhoneError):
    """One call failed for one object; the session is still usable."""


@dataclass(frozen=True)
class FoundPhone:
    """A phone a backend can open: ``port`` as the backend names it (``usb:001,005``)."""

    port: str
    model: str


@dataclass(frozen=True)
class Storage:
    """One storage of a phone. ``storage_id`` is the MTP/PTP id when the backend knows it
    (``DUMMY_STORAGE_ID`` for an untrusted iPhone's placeholder); sizes in bytes, None if unknown."""

    folder: str
    description: str
    storage_id: int | None = None
    capacity: int | None = None
    free: int | None = None

    @property
    def dummy(self) -> bool:
        return self.storage_id == DUMMY_STORAGE_ID

    def describe(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "description": self.description,
            "storage_id": self.storage_id,
            "capacity": self.capacity,
            "free": self.free,
        }


@dataclass(frozen=True)
class PhoneFile:
    """A listed file; ``problem`` set (and ``size`` 0) when its details could not be had: it is
    then an error of the scan, not a lost folder."""

    name: str
    size: int
    problem: str | None = None


class PhoneSession(Protocol):
    """An open session with one phone. Every call may raise ``PhoneGone``; listing and reading may
    raise ``ObjectGone`` or ``PhoneReadError`` for one object."""

    partial_reads: bool  # False: ``read`` fetches the whole file (and keeps it for the next call)

    def storages(self) -> list[Storage]: ...

    def folders(self, folder: str) -> list[str]:
        """Names of the subfolders of ``folder``."""
        ...

    def files(self, folder: str) -> list[PhoneFile]:
        """The files of ``folder`` with the sizes the phone reports."""
        ...

    def read(self, folder: str, name: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes of a file from ``offset`` (fewer only at its end)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> PhoneSession: ...

    def __exit__(self, *exc: object) -> None: ...


class PhoneBackend(Protocol):
    def detect(self) -> list[FoundPhone]:
        """The phones that can be opened now."""
        ...

    def open(self, port: str) -> PhoneSession:
        """A session with the phone at ``port``; ``PhoneGone`` when it cannot be opened."""
        ...


def join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}"
