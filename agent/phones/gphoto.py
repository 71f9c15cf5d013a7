"""The real phone backend: libgphoto2 (python-gphoto2's wheel, its ptp2 driver speaks MTP and PTP).

- One ``gp.Context`` and ``gp.Camera`` per session, nothing global (a backend caches only the
  driver list); ``close()`` or the ``with`` block ends a session.
- A port is opened by its exact path in libgphoto2's port list (``usb:001,005``), never a generic
  entry (``usb:`` is whichever camera libgphoto2 finds first), with the driver libgphoto2 detects
  for it. ``disk:`` ports (a mounted folder holding ``DCIM``, the "Directory Browse" driver) are
  not phones: only ``GphotoBackend(disk_ports=True)`` offers them, for tests without a phone.
- Reads are partial (MTP GetPartialObject) where the driver can; where it cannot, ``partial_reads``
  becomes False and a file is fetched whole (at most 512 MiB) and kept until another is read.
- Only listing and reading: nothing here creates, deletes or changes an object on the phone,
  takes a picture or sets a property (a test checks the source for those calls).
- Errors are one printable line: ``port:path``, what failed, gphoto2's message and code, and what
  the driver told the context. Transport errors, a port gone from the port list and a phone still
  busy after retries are ``PhoneGone`` and end the session; missing objects are ``ObjectGone``;
  the rest ``PhoneReadError``. A folder whose listing failed keeps failing (libgphoto2 would hand
  out the part it cached), as does one holding a name that is not UTF-8 (python-gphoto2 cannot
  pass it on); other impossible names go to the scan, which reports them.
- libgphoto2 logs only to functions registered with it, and none is: a scan prints nothing.

Example::

    backend = GphotoBackend()
    for found in backend.detect():
        with backend.open(found.port) as session:
            top = session.storages()[0].folder
            print(session.folders(top), session.read(join(top, "DCIM"), "IMG_1.jpg", 0, 4096))
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gphoto2 as gp

from agent.phones.camera import (
    FoundPhone,
    ObjectGone,
    PhoneError,
    PhoneFile,
    PhoneGone,
    PhoneReadError,
    Storage,
    join,
)
from filters.errors import printable

WHOLE_FILE_LIMIT = 512 << 20  # the most a session holds of a phone that cannot read parts of files
LARGEST_CALL = 16 << 20  # the most asked of one partial read (libgphoto2 takes 32-bit sizes)
BUSY_TRIES, BUSY_WAIT = 5, 0.2  # a busy phone is asked again after 0.2, 0.4, ... seconds
DIRECTORY_MODEL = "Directory Browse"
STORE_FOLDER = re.compile(r"/store_([0-9A-Fa-f]{8})")
GONE_CODES = frozenset(
    (gp.GP_ERROR_IO, gp.GP_ERROR_IO_INIT, gp.GP_ERROR_IO_LOCK, gp.GP_ERROR_IO_READ, gp.GP_ERROR_IO_WRITE,
     gp.GP_ERROR_IO_UPDATE, gp.GP_ERROR_IO_USB_CLAIM, gp.GP_ERROR_IO_USB_CLEAR_HALT, gp.GP_ERROR_IO_USB_FIND,
     gp.GP_ERROR_IO_SERIAL_SPEED, gp.GP_ERROR_IO_SUPPORTED_SERIAL, gp.GP_ERROR_IO_SUPPORTED_USB,
     gp.GP_ERROR_MODEL_NOT_FOUND, gp.GP_ERROR_UNKNOWN_PORT, gp.GP_ERROR_TIMEOUT, gp.GP_ERROR_CAMERA_BUSY)
)  # fmt: skip
OBJECT_CODES = frozenset((gp.GP_ERROR_FILE_NOT_FOUND, gp.GP_ERROR_DIRECTORY_NOT_FOUND))
T = TypeVar("T")


class _Unsupported(Exception):
    """The driver cannot do this (GP_ERROR_NOT_SUPPORTED); the caller has another way."""


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _load_ports() -> Any:
    ports = gp.PortInfoList()
    ports.load()
    return ports


def _port_index(ports: Any, port: str) -> int | None:
    """The entry whose path is exactly ``port``: never a generic one (``usb:`` is any camera, and
    ``lookup_path`` would match those)."""
    if port.endswith(":"):
        return None
    for index in range(int(ports.count())):
        try:
            if ports.get_info(index).get_path() == port:
                return index
        except UnicodeDecodeError:  # a mount point that is not UTF-8: not ours
            continue
    return None


class GphotoBackend:
    """Finds and opens phones through libgphoto2. ``disk_ports``: also offer mounted folders holding
    ``DCIM`` (libgphoto2's "Directory Browse" driver), which only tests want."""

    def __init__(self, disk_ports: bool = False) -> None:
        self.disk_ports = disk_ports
        self._drivers: Any = None

    def _abilities(self, context: Any) -> Any:
        if self._drivers is None:
            drivers = gp.CameraAbilitiesList()
            drivers.load(context)
            self._drivers = drivers
        return self._drivers

    def _detect(self, ports: Any, context: Any) -> dict[str, str]:
        """port -> model, for what a driver claims, without the generic ``usb:`` entry."""
        found: dict[str, str] = {}
        listing = self._abilities(context).detect(ports, context)
        for index in range(int(listing.count())):
            try:
                model, port = str(listing.get_name(index)), str(listing.get_value(index))
            except UnicodeDecodeError:
                continue
            if port != "usb:" and (self.disk_ports or not port.startswith("disk:")):
                found.setdefault(port, model)
        return found

    def detect(self) -> list[FoundPhone]:
        context = gp.Context()
        try:
            found = self._detect(_load_ports(), context)
        except gp.GPhoto2Error as error:
            raise PhoneReadError("libgphoto2", f"could not detect phones: {error}") from None
        return [FoundPhone(port, model) for port, model in found.items()]

    def open(self, port: str) -> GphotoSession:
        if port.startswith("disk:") and not self.disk_ports:
            raise PhoneGone(port, "a disk: port is a mounted folder, not a phone")
        context = gp.Context()
        try:
            ports = _load_ports()
            index = _port_index(ports, port)
            if index is None:
                raise PhoneGone(port, "not in libgphoto2's port list (unplugged?)")
            model = DIRECTORY_MODEL if port.startswith("disk:") else self._detect(ports, context).get(port)
            if model is None:
                raise PhoneGone(port, "no libgphoto2 driver claims this device")
            drivers = self._abilities(context)
            abilities = drivers.get_abilities(drivers.lookup_model(model))
            return GphotoSession(port, model, ports.get_info(index), abilities)
        except gp.GPhoto2Error as error:
            raise PhoneGone(port, f"could not open: {error}") from None


class GphotoSession:
    """A session with one phone (see ``PhoneSession``); made by ``GphotoBackend.open``."""

    def __init__(self, port: str, model: str, port_info: Any, abilities: Any) -> None:
        self.port, self.model = port, model
        self.partial_reads = True
        self._lock = threading.Lock()
        self._gone: PhoneGone | None = None
        self._closed = False
        self._failed: dict[tuple[str, str], PhoneError] = {}  # (listing, folder) -> why it failed
        self._whole: tuple[str, Any, memoryview] | None = None  # path, its CameraFile, its bytes
        self._messages: list[str] = []  # what the driver told the context during the last call
        self._context: Any = gp.Context()
        self._callback = self._context.set_error_func(self._on_error, None)
        self._camera: Any = gp.Camera()
        try:
            self._camera.set_port_info(port_info)
            self._camera.set_abilities(abilities)
            self._camera.init(self._context)
        except gp.GPhoto2Error as error:
            raise PhoneGone(port, self._reason("could not open", error)) from None

    def _on_error(self, context: object, message: object, data: object) -> None:
        self._messages.append(_text(message).strip())

    def _subject(self, path: str) -> str:
        return f"{self.port}:{path}"

    def _reason(self, what: str, error: Any) -> str:
        told = "; ".join(m for m in self._messages if m)
        return printable(f"{what}: {_text(error.string)} [{error.code}]" + (f" ({told})" if told else ""))

    def _present(self) -> bool:
        try:
            return _port_index(_load_ports(), self.port) is not None
        except gp.GPhoto2Error:
            return False

    def _end(self, gone: PhoneGone) -> PhoneGone:
        self._gone = gone
        self._release()
        return gone

    def _release(self) -> None:
        self._whole = None
        if self._camera is not None:
            try:
                self._camera.exit(self._context)
            except gp.GPhoto2Error:
                pass  # the phone may be gone already
            self._camera = None

    def _check(self, path: str) -> None:
        if self._closed:
            raise PhoneGone(self._subject(path), "the session is closed")
        if self._gone is not None:
            raise PhoneGone(self._subject(path), f"gone earlier: {self._gone.reason}")

    def _call(self, what: str, path: str, function: Callable[..., T], *args: object, ok: bool = False) -> T:
        """``function(*args, context)``; ``ok``: GP_ERROR_NOT_SUPPORTED raises ``_Unsupported``."""
        for attempt in range(1, BUSY_TRIES + 1):
            self._messages.clear()
            try:
                return function(*args, self._context)
            except gp.GPhoto2Error as error:
                if error.code == gp.GP_ERROR_CAMERA_BUSY:
                    if attempt < BUSY_TRIES:
                        time.sleep(BUSY_WAIT * attempt)
                        continue
                    what = f"{what} (still busy after {attempt} tries)"
                if ok and error.code == gp.GP_ERROR_NOT_SUPPORTED:
                    raise _Unsupported() from None
                raise self._error(what, path, error) from None
            except UnicodeError as error:  # a path libgphoto2 cannot be given
                raise PhoneReadError(self._subject(path), f"{what}: {error}") from None
        raise AssertionError("unreachable")

    def _error(self, what: str, path: str, error: Any) -> PhoneError:
        reason = self._reason(what, error)
        if error.code in GONE_CODES:
            return self._end(PhoneGone(self._subject(path), reason))
        if not self._present():
            return self._end(PhoneGone(self._subject(path), f"{reason}; the port is gone"))
        if error.code in OBJECT_CODES:
            return ObjectGone(self._subject(path), reason)
        return PhoneReadError(self._subject(path), reason)

    def storages(self) -> list[Storage]:
        with self._lock:
            self._check("/")
            try:
                infos = self._call("storage info", "/", self._camera.get_storageinfo, ok=True)
            except _Unsupported:
                found = [Storage("/", self.model)]
            else:
                found = [self._storage(info) for info in infos]
            if not self._present():
                raise self._end(PhoneGone(self._subject("/"), "the port is gone"))
            return found

    def _storage(self, info: Any) -> Storage:
        fields = int(info.fields)

        def text(flag: int, name: str) -> str:
            try:
                return str(getattr(info, name)) if fields & flag else ""
            except UnicodeDecodeError:
                return ""

        folder = text(gp.GP_STORAGEINFO_BASE, "basedir") or "/"
        named = text(gp.GP_STORAGEINFO_DESCRIPTION, "description") or text(gp.GP_STORAGEINFO_LABEL, "label")
        match = STORE_FOLDER.fullmatch(folder)
        capacity = int(info.capacitykbytes) * 1024 if fields & gp.GP_STORAGEINFO_MAXCAPACITY else None
        free = int(info.freekbytes) * 1024 if fields & gp.GP_STORAGEINFO_FREESPACEKBYTES else None
        storage_id = int(match.group(1), 16) if match else None
        return Storage(folder, named or folder.strip("/") or self.model, storage_id, capacity, free)

    def _names(self, what: str, folder: str, function: Callable[..., Any]) -> list[str]:
        if (what, folder) in self._failed:
            failed = self._failed[what, folder]
            raise type(failed)(failed.subject, f"{failed.reason} (failed before)")
        try:
            listing = self._call(what, folder, function, folder)
            names = []
            for index in range(int(listing.count())):
                try:
                    name = str(listing.get_name(index))
                except UnicodeDecodeError:
                    raise PhoneReadError(self._subject(folder), f"{what}: a name that is not UTF-8") from None
                names.append(name)
            return names
        except (ObjectGone, PhoneReadError) as error:
            self._failed[what, folder] = error
            raise

    def folders(self, folder: str) -> list[str]:
        with self._lock:
            self._check(folder)
            return self._names("list folders", folder, self._camera.folder_list_folders)

    def files(self, folder: str) -> list[PhoneFile]:
        with self._lock:
            self._check(folder)
            names = self._names("list files", folder, self._camera.folder_list_files)
            return [self._file(folder, name) for name in names]

    def _file(self, folder: str, name: str) -> PhoneFile:
        try:
            return PhoneFile(name, self._size(folder, name))
        except (ObjectGone, PhoneReadError) as err:  # that file is an error of the scan, not its folder
            return PhoneFile(name, 0, err.reason)

    def _size(self, folder: str, name: str) -> int:
        path = join(folder, name)
        info = self._call("file info", path, self._camera.file_get_info, folder, name)
        if not int(info.file.fields) & gp.GP_FILE_INFO_SIZE:
            raise PhoneReadError(self._subject(path), "the phone does not say how large it is")
        return int(info.file.size)

    def read(self, folder: str, name: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"read of {length} bytes at {offset}")
        path = join(folder, name)
        with self._lock:
            self._check(path)
            if length == 0:
                return b""
            if self.partial_reads:
                try:
                    return self._read_part(folder, name, offset, length)
                except _Unsupported:
                    pass
            return self._read_whole(folder, name, offset, length)

    def _read_part(self, folder: str, name: str, offset: int, length: int) -> bytes:
        path, buffer, done = join(folder, name), bytearray(length), 0
        while done < length:
            asked = min(length - done, LARGEST_CALL)
            part = memoryview(buffer)[done : done + asked]
            try:
                got = int(self._call("read", path, self._camera.file_read, folder, name,
                                     gp.GP_FILE_TYPE_NORMAL, offset + done, part, ok=True))  # fmt: skip
            except _Unsupported:
                # ptp2 also refuses empty files and offsets past 4 GiB without GetPartialObject64
                if offset + done <= 0xFFFFFFFF and self._size(folder, name) > 0:
                    self.partial_reads = False
                raise
            if not 0 <= got <= asked:
                raise PhoneReadError(self._subject(path), f"read: {got} bytes where {asked} were asked")
            if got == 0:
                break
            done += got
        return bytes(buffer) if done == length else bytes(memoryview(buffer)[:done])

    def _read_whole(self, folder: str, name: str, offset: int, length: int) -> bytes:
        path = join(folder, name)
        if self._whole is None or self._whole[0] != path:
            self._whole = None
            refusal = "larger than the 512 MiB a session fetches whole (the phone cannot read parts of files)"
            size = self._size(folder, name)
            if size == 0:  # ptp2 fetches no empty object ("Unsupported operation")
                return b""
            if size > WHOLE_FILE_LIMIT:
                raise PhoneReadError(self._subject(path), f"{size} bytes: {refusal}")
            fetched = self._call(
                "read", path, self._camera.file_get, folder, name, gp.GP_FILE_TYPE_NORMAL, None
            )
            data = memoryview(fetched.get_data_and_size() or b"").cast("B")
            if data.nbytes > WHOLE_FILE_LIMIT:
                raise PhoneReadError(self._subject(path), f"{data.nbytes} bytes: {refusal}")
            self._whole = (path, fetched, data)
        return bytes(self._whole[2][offset : offset + length])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._release()

    def __enter__(self) -> GphotoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
