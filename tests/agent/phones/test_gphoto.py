"""The libgphoto2 backend for real, without a phone.

Mostly through libgphoto2's "Directory Browse" driver on a tmpfs we mount (a ``disk:`` port exists
for each mounted filesystem holding ``DCIM``): random bytes; listing, sizes, reads at offsets, the
whole-file path (this driver cannot read parts), missing objects, a name that is not UTF-8, an
unmounted filesystem and a closed session, and at the end the tree is unchanged and nothing was
printed. These need root (mount). The ptp2 driver itself (the one phones use) runs against the
wheel's virtual PTP camera (``VCAMERADIR``: libgphoto2 loads it instead of USB, so in a child
process): storages named ``/store_00010001``, every object listed, the whole-file fallback (it has
no GetPartialObject), an empty file that says nothing about partial reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gphoto2 as gp
import pytest

from agent.phones import gphoto
from agent.phones.camera import (
    READ_CHUNK,
    ObjectGone,
    PhoneBackend,
    PhoneError,
    PhoneGone,
    PhoneReadError,
    PhoneSession,
    join,
)
from agent.phones.gphoto import WHOLE_FILE_LIMIT, GphotoBackend, GphotoSession

MiB = 1 << 20
# The directory driver lists only files whose extension it knows as media (jpg, png, mp4, ...).
TREE = {
    "DCIM/Camera/IMG_0001.jpg": 3 * MiB + 1234,
    "DCIM/Camera/IMG_0002.jpg": 100_000,
    "DCIM/Camera/empty.jpg": 0,
    "DCIM/Urlaub am Meer \u2013 Ärger/Foto mit Leerzeichen ß 😀.jpg": 5000,
    "DCIM/a/b/c/deep.png": 777,
    "Pictures/Screenshots/shot.png": 4096,
    "Movies/clip.mp4": 65537,
}
EMPTY_FOLDER = "DCIM/nothing here"
HOSTILE = "DCIM/hostile"  # holds a name that is not UTF-8, and one that is
BIG = "DCIM/Camera/IMG_0001.jpg"


def mount_tmpfs(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    return where


def unmount(where: Path) -> None:
    if os.path.ismount(where):  # only our own mount point, and only if still mounted
        subprocess.run(["umount", str(where)], check=True, capture_output=True)


def build_tree(root: Path) -> None:
    rng = random.Random(20261202)
    for relative, size in TREE.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    (root / EMPTY_FOLDER).mkdir(parents=True)
    (root / HOSTILE).mkdir(parents=True)
    (root / HOSTILE / "fine.jpg").write_bytes(rng.randbytes(10))
    with open(os.path.join(os.fsencode(root / HOSTILE), b"bad\xff\xfe.jpg"), "wb") as out:
        out.write(rng.randbytes(10))


def snapshot(root: Path) -> dict[bytes, tuple[int, int, int, int, str]]:
    """Every entry: mode, size, mtime, ctime and the bytes' digest (reads change only atime)."""
    found = {}
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest = hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest() if name in files else ""
            found[os.path.relpath(path, os.fsencode(root))] = (
                st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest
            )  # fmt: skip
    return found


def walk(session: PhoneSession, folder: str = "/") -> tuple[dict[str, int], dict[str, PhoneError]]:
    """path -> size for every file the session lists, and the folders it could not list."""
    sizes: dict[str, int] = {}
    failed: dict[str, PhoneError] = {}
    try:
        subfolders, files = session.folders(folder), session.files(folder)
    except PhoneReadError as error:
        return sizes, {folder: error}
    sizes.update((join(folder, f.name), f.size) for f in files)
    for name in subfolders:
        more, more_failed = walk(session, join(folder, name))
        sizes.update(more)
        failed.update(more_failed)
    return sizes, failed


def one_line(error: BaseException, *parts: str) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text and "GPhoto2Error" not in text, text
    for part in parts:
        assert part in text, (part, text)
    return text


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs for libgphoto2's disk: port")
    root = mount_tmpfs(tmp_path_factory.mktemp("gphoto") / "phone")
    try:
        build_tree(root)
        yield root
    finally:
        unmount(root)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, for the tests that unmount it or put odd files in it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs for libgphoto2's disk: port")
    root = mount_tmpfs(tmp_path / "scratch")
    try:
        yield root
    finally:
        unmount(root)


@pytest.fixture
def session(phone: Path) -> Iterator[GphotoSession]:
    with GphotoBackend(disk_ports=True).open(f"disk:{phone}") as opened:
        yield opened


def test_the_source_calls_nothing_that_writes_to_a_phone() -> None:
    source = Path(gphoto.__file__).read_text()
    for name in ("file_delete", "put_file", "folder_make_dir", "folder_remove_dir", "folder_delete_all",
                 "capture", "set_config", "set_single_config", "file_set_info", "port_write", "msg_write",
                 "reset"):  # fmt: skip
        assert name not in source, name
    assert not re.search(r"\bgetattr\((?!info, name\))", source), "no calls by computed names"


def typed(backend: GphotoBackend) -> PhoneBackend:
    return backend  # mypy: the real backend is a PhoneBackend


@pytest.mark.root
def test_detect_offers_disk_ports_only_when_asked(phone: Path) -> None:
    assert any(f.port == f"disk:{phone}" for f in typed(GphotoBackend(disk_ports=True)).detect())
    assert not any(f.port.startswith("disk:") for f in GphotoBackend().detect())
    with pytest.raises(PhoneGone) as refused:
        GphotoBackend().open(f"disk:{phone}")
    one_line(refused.value, f"disk:{phone}", "not a phone")


@pytest.mark.root
def test_unknown_ports_are_phone_gone(phone: Path, tmp_path: Path) -> None:
    backend = GphotoBackend(disk_ports=True)
    for port in ("usb:999,999", f"disk:{tmp_path}", "usb:"):  # "usb:" would be any camera
        with pytest.raises(PhoneGone) as gone:
            backend.open(port)
        one_line(gone.value, port, "not in libgphoto2's port list")


@pytest.mark.root
def test_storages(session: GphotoSession, phone: Path) -> None:
    (storage,) = session.storages()
    fs = os.statvfs(phone)
    assert (storage.folder, storage.description, storage.storage_id) == ("/", "Directory Driver", None)
    assert storage.capacity == fs.f_blocks * fs.f_frsize == 32 * MiB
    assert storage.free is not None and 0 < storage.free <= storage.capacity
    assert session.partial_reads


@pytest.mark.root
def test_listing_matches_the_tree(session: GphotoSession) -> None:
    sizes, failed = walk(session)
    assert sizes == {"/" + path: size for path, size in TREE.items()}
    assert list(failed) == ["/" + HOSTILE]
    assert session.folders("/" + EMPTY_FOLDER) == [] and session.files("/" + EMPTY_FOLDER) == []
    assert sorted(session.folders("/")) == ["DCIM", "Movies", "Pictures"]


@pytest.mark.root
def test_reads_at_offsets(session: GphotoSession, phone: Path) -> None:
    data = (phone / BIG).read_bytes()
    folder, name = os.path.split("/" + BIG)
    size = len(data)
    assert session.read(folder, "empty.jpg", 0, 4096) == b""
    assert session.partial_reads  # an empty file says nothing about partial reads
    for offset, length in ((0, 4096), (size // 2, 4096), (size - 4096, 4096), (size - 100, 4097),
                           (size, 10), (size + 5000, 4096), (123, 0)):  # fmt: skip
        assert session.read(folder, name, offset, length) == data[offset : offset + length], (offset, length)
    assert not session.partial_reads  # the directory driver cannot read parts: fetched whole
    whole = b"".join(session.read(folder, name, at, READ_CHUNK) for at in range(0, size, READ_CHUNK))
    assert whole == data
    other = (phone / "DCIM/Camera/IMG_0002.jpg").read_bytes()
    assert session.read(folder, "IMG_0002.jpg", 99_000, 4096) == other[99_000:]
    assert session.read(folder, name, 7, 3) == data[7:10]
    with pytest.raises(ValueError):
        session.read(folder, name, -1, 10)


class PtpReads:
    """The session's real camera (directory driver) with ``file_read`` as ptp2 does it: clamped to
    the object's size, at most ``step`` bytes a call, "unsupported" for an empty object; ``faults``
    are gphoto2 error codes raised by the next calls."""

    def __init__(self, camera: Any, root: Path, step: int, faults: list[int] | None = None) -> None:
        self.camera, self.root, self.step, self.faults = camera, root, step, faults or []
        self.calls: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.camera, name)

    def file_read(self, folder: str, name: str, kind: int, offset: int, buffer: Any, context: Any) -> int:
        self.calls.append((offset, len(buffer)))
        if self.faults:
            raise gp.GPhoto2Error(self.faults.pop(0))
        data = (self.root / folder.lstrip("/") / name).read_bytes()
        if not data:
            raise gp.GPhoto2Error(gp.GP_ERROR_NOT_SUPPORTED)
        piece = data[offset : offset + min(len(buffer), self.step)]
        buffer[: len(piece)] = piece
        return len(piece)


@pytest.mark.root
def test_partial_reads_loop_until_the_length_or_the_end(
    session: GphotoSession, phone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camera = session._camera = PtpReads(session._camera, phone, step=1000)
    data = (phone / BIG).read_bytes()
    folder, name = os.path.split("/" + BIG)
    assert session.read(folder, name, 5, 4096) == data[5:4101]
    assert camera.calls == [(5 + done, 4096 - done) for done in range(0, 4096, 1000)]
    assert session.read(folder, name, len(data) - 100, 4097) == data[-100:]  # one past the end
    assert session.read(folder, name, len(data) + 1, 10) == b""
    assert session.read(folder, "empty.jpg", 0, 10) == b""
    assert session.partial_reads  # neither an empty file nor the end of one turns partial reads off
    camera.step = 1 << 30
    monkeypatch.setattr(gphoto, "LARGEST_CALL", 1 << 20)
    assert session.read(folder, name, 0, len(data)) == data
    assert max(asked for _, asked in camera.calls) == 1 << 20


@pytest.mark.root
def test_error_codes(session: GphotoSession, phone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gphoto, "BUSY_WAIT", 0.0)
    port, (folder, name) = f"disk:{phone}", os.path.split("/" + BIG)
    camera = session._camera = PtpReads(session._camera, phone, step=1 << 20)
    camera.faults = [gp.GP_ERROR_CAMERA_BUSY] * (gphoto.BUSY_TRIES - 1)
    assert session.read(folder, name, 0, 10) == (phone / BIG).read_bytes()[:10]  # busy, then answers
    camera.faults = [gp.GP_ERROR]
    with pytest.raises(PhoneReadError) as failed:
        session.read(folder, name, 0, 10)
    one_line(failed.value, f"{port}:/{BIG}", "read: Unspecified error [-1]")
    camera.faults = [gp.GP_ERROR_TIMEOUT]
    with pytest.raises(PhoneGone) as gone:
        session.read(folder, name, 0, 10)
    one_line(gone.value, f"{port}:/{BIG}", "Timeout")
    with pytest.raises(PhoneGone) as gone:
        session.files("/DCIM")  # at once: the session ended with the timeout
    one_line(gone.value, "gone earlier")
    assert camera.calls == [(0, 10)] * (gphoto.BUSY_TRIES + 2)


@pytest.mark.root
def test_a_phone_busy_on_every_retry_is_gone(
    session: GphotoSession, phone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gphoto, "BUSY_WAIT", 0.0)
    camera = session._camera = PtpReads(session._camera, phone, 1 << 20, [gp.GP_ERROR_CAMERA_BUSY] * 99)
    with pytest.raises(PhoneGone) as gone:
        session.read(*os.path.split("/" + BIG), 0, 10)
    one_line(gone.value, "busy")
    assert len(camera.calls) == gphoto.BUSY_TRIES


@pytest.mark.root
def test_missing_objects_are_object_gone(session: GphotoSession, phone: Path) -> None:
    port = f"disk:{phone}"
    with pytest.raises(ObjectGone) as gone:
        session.read("/DCIM/Camera", "IMG_9999.jpg", 0, 4096)
    one_line(gone.value, f"{port}:/DCIM/Camera/IMG_9999.jpg", "File not found")
    with pytest.raises(ObjectGone) as gone:
        session.files("/DCIM/no such folder")
    one_line(gone.value, f"{port}:/DCIM/no such folder", "Directory not found")
    assert len(session.read("/DCIM/Camera", "IMG_0002.jpg", 0, 10)) == 10  # the session goes on


@pytest.mark.root
def test_a_name_that_is_not_utf8_fails_its_folder_every_time(session: GphotoSession, phone: Path) -> None:
    for _ in range(2):
        with pytest.raises(PhoneReadError) as failed:
            session.files("/" + HOSTILE)
        one_line(failed.value, f"disk:{phone}:/{HOSTILE}", "not UTF-8")
    assert session.folders("/" + HOSTILE) == []


@pytest.mark.root
def test_a_closed_session_is_phone_gone(phone: Path) -> None:
    backend = GphotoBackend(disk_ports=True)
    with backend.open(f"disk:{phone}") as opened:
        assert opened.files("/DCIM/Camera")
    for call in (
        opened.storages,
        lambda: opened.files("/DCIM/Camera"),
        lambda: opened.read("/DCIM", "x.jpg", 0, 1),
    ):
        with pytest.raises(PhoneGone) as gone:
            call()
        one_line(gone.value, f"disk:{phone}", "closed")
    opened.close()  # twice is fine


@pytest.mark.root
def test_an_unmounted_filesystem_is_phone_gone(scratch: Path) -> None:
    (scratch / "DCIM" / "sub").mkdir(parents=True)
    (scratch / "DCIM" / "a.jpg").write_bytes(os.urandom(5000))
    backend = GphotoBackend(disk_ports=True)
    reader, lister, counter = (backend.open(f"disk:{scratch}") for _ in range(3))
    assert [f.name for f in reader.files("/DCIM")] == ["a.jpg"] and lister.folders("/DCIM") == ["sub"]
    unmount(scratch)
    with pytest.raises(PhoneGone) as gone:
        reader.read("/DCIM", "a.jpg", 0, 4096)
    one_line(gone.value, f"disk:{scratch}:/DCIM/a.jpg")
    with pytest.raises(PhoneGone) as gone:
        reader.folders("/")  # libgphoto2 has it cached: PhoneGone all the same, at once
    one_line(gone.value, "gone earlier")
    with pytest.raises(PhoneGone) as gone:
        lister.files("/DCIM/sub")
    one_line(gone.value, f"disk:{scratch}:/DCIM/sub", "the port is gone")
    with pytest.raises(PhoneGone):
        counter.storages()
    with pytest.raises(PhoneGone):
        backend.open(f"disk:{scratch}")
    for opened in (reader, lister, counter):
        opened.close()


@pytest.mark.root
def test_files_too_large_to_fetch_whole_are_refused(scratch: Path) -> None:
    (scratch / "DCIM").mkdir()
    huge = scratch / "DCIM" / "huge.mp4"
    with open(huge, "wb") as out:
        out.truncate(WHOLE_FILE_LIMIT + 1)  # sparse: no memory used
    (scratch / "DCIM" / "small.jpg").write_bytes(b"s" * 100)
    with GphotoBackend(disk_ports=True).open(f"disk:{scratch}") as opened:
        assert {f.name: f.size for f in opened.files("/DCIM")}["huge.mp4"] == WHOLE_FILE_LIMIT + 1
        with pytest.raises(PhoneReadError) as refused:
            opened.read("/DCIM", "huge.mp4", 0, 4096)
        one_line(refused.value, f"disk:{scratch}:/DCIM/huge.mp4", "512 MiB")
        assert opened.read("/DCIM", "small.jpg", 90, 4096) == b"s" * 10


@pytest.mark.root
def test_nothing_is_written_and_nothing_printed(phone: Path, capfd: pytest.CaptureFixture[str]) -> None:
    before = snapshot(phone)
    backend = GphotoBackend(disk_ports=True)
    backend.detect()
    with backend.open(f"disk:{phone}") as opened:
        opened.storages()
        sizes, _ = walk(opened)
        for path, size in sizes.items():
            folder, name = os.path.split(path)
            for offset in (0, max(0, size // 2 - 2048), max(0, size - 4096)):
                opened.read(folder, name, offset, 4097)
        for call in (lambda: opened.read("/DCIM", "gone.jpg", 0, 1), lambda: opened.files("/nope")):
            with pytest.raises(ObjectGone):
                call()
    with pytest.raises(PhoneGone):
        backend.open("usb:999,999")
    assert snapshot(phone) == before
    assert capfd.readouterr() == ("", "")


VIRTUAL_TREE = {  # ASCII only: the virtual camera sends each byte of a name as one UCS-2 character
    "DCIM/100TEST/IMG_0001.JPG": 300_000,
    "DCIM/100TEST/clip.mp4": 70_001,  # format "undefined": a PTP camera (not MTP) cannot fetch it
    "DCIM/100TEST/empty.bin": 0,  # (an empty .JPG breaks the virtual camera's EXIF code: not listed)
    "Pictures/a/b/notes.txt": 5000,
    "Pictures/no extension": 4096,
}
VIRTUAL_CHILD = """
import json
from agent.phones.camera import ObjectGone, PhoneReadError, join
from agent.phones.gphoto import GphotoBackend

backend = GphotoBackend()
found = backend.detect()
out = {"found": [[f.port, f.model] for f in found]}
with backend.open(found[0].port) as session:
    storages = session.storages()
    out["storages"] = [s.describe() for s in storages]
    files = {}

    def walk(folder):
        files.update((join(folder, f.name), f.size) for f in session.files(folder))
        for name in session.folders(folder):
            walk(join(folder, name))

    walk(storages[0].folder)
    out["files"] = files
    out["empty"] = session.read(storages[0].folder + "/DCIM/100TEST", "empty.bin", 0, 4097).hex()
    out["partial_after_empty"] = session.partial_reads
    out["reads"], out["unreadable"] = {}, {}
    for path, size in files.items():
        folder, name = path.rsplit("/", 1)
        try:
            at = (0, size // 2, max(0, size - 4096))
            out["reads"][path] = [session.read(folder, name, offset, 4097).hex() for offset in at]
        except PhoneReadError as error:
            out["unreadable"][path] = str(error)
    out["partial_after"] = session.partial_reads
    try:
        session.read(storages[0].folder + "/DCIM", "nope.jpg", 0, 1)
    except ObjectGone as error:
        out["gone"] = str(error)
print(json.dumps(out))
"""


def test_the_ptp2_driver_on_the_virtual_camera(tmp_path: Path) -> None:
    root = tmp_path / "vcamera"
    rng = random.Random(7)
    for relative, size in VIRTUAL_TREE.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(rng.randbytes(size))
    before = snapshot(root)
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "VCAMERADIR": str(root), "PYTHONPATH": str(repo)}
    child = subprocess.run(
        [sys.executable, "-c", VIRTUAL_CHILD], capture_output=True, text=True, env=env, cwd=repo, timeout=120
    )
    assert child.returncode == 0 and child.stderr == "", child.stderr
    out = json.loads(child.stdout)
    (port, _model), *others = out["found"]
    assert port.startswith("usb:") and not others
    (storage,) = out["storages"]
    assert storage["folder"] == "/store_00010001" and storage["storage_id"] == 0x00010001
    assert storage["description"] and storage["capacity"] and storage["free"] is not None
    assert out["files"] == {"/store_00010001/" + path: size for path, size in VIRTUAL_TREE.items()}
    assert out["empty"] == "" and out["partial_after_empty"] is True
    unreadable = {f"/store_00010001/{path}" for path in ("DCIM/100TEST/clip.mp4", "Pictures/no extension")}
    assert set(out["unreadable"]) == unreadable
    for path, error in out["unreadable"].items():
        one_line(Exception(error), f"{port}:{path}", "Unsupported operation")
    assert set(out["reads"]) == set(out["files"]) - unreadable
    for path, pieces in out["reads"].items():
        data = (root / path.removeprefix("/store_00010001/")).read_bytes()
        size = len(data)
        assert pieces == [data[at : at + 4097].hex() for at in (0, size // 2, max(0, size - 4096))], path
    assert out["partial_after"] is False  # the virtual camera has no GetPartialObject
    one_line(Exception(out["gone"]), f"{port}:/store_00010001/DCIM/nope.jpg", "File not found")
    assert snapshot(root) == before
