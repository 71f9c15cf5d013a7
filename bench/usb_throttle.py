"""A tree on a read-only loop device whose reads are throttled to USB speed (cgroup v1 blkio).

``ThrottledImage`` copies source trees (as hard links) into a staging folder, builds an ext4 image
from it without mounting (``mkfs.ext4 -d``), attaches the image read-only (``losetup -r``), mounts
it ``ro,noload`` and makes a blkio cgroup whose ``blkio.throttle.read_bps_device`` (and optionally
``read_iops_device``) limits reads from that loop device. ``run`` starts a command inside the cgroup
(a ``sh`` wrapper writes its own pid to ``cgroup.procs``, then ``exec``s the command, so the command
and all its children are throttled) and returns its wall time, its block reads (``wait4`` rusage
``ru_inblock``, the same counter as ``/proc/<pid>/io`` ``read_bytes``), the loop device's sectors
read (``/sys/block/loopN/stat``) and the cgroup's bytes read from the device. Everything is undone
on exit, also after an error: unmount, ``losetup -d``, cgroup removed (any process left in it is
moved to the root cgroup first), image and staging folder deleted. Needs root.

Reads through the page cache are throttled in cgroup v1 (they are submitted by the reading task);
``check`` measures it with ``dd`` before anything else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BLKIO = Path("/sys/fs/cgroup/blkio")


@dataclass
class Run:
    wall: float
    returncode: int
    inblock_bytes: int  # ru_inblock * 512 of the process tree (task I/O accounting, like read_bytes)
    device_bytes: int  # sectors read from the loop device * 512, whoever read them
    cgroup_bytes: int  # bytes the cgroup read from the loop device (blkio.throttle.io_service_bytes)
    stdout: str


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def tree_allocated(root: Path) -> tuple[int, int]:
    """Bytes allocated (st_blocks) and entries under root."""
    total = entries = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            entries += 1
    return total, entries


class ThrottledImage:
    def __init__(self, sources: dict[str, Path], work: Path, read_bps: int, read_iops: int = 0) -> None:
        self.sources = sources
        self.work = work
        self.read_bps = read_bps
        self.read_iops = read_iops
        tag = f"ft-usb-{os.getpid()}"
        self.stage = work / f"{tag}-stage"
        self.image = work / f"{tag}.img"
        self.mount = work / f"{tag}-mnt"
        self.cgroup = BLKIO / tag
        self.device = ""
        self.devno = ""
        self.image_bytes = 0
        self._stack = contextlib.ExitStack()

    # -- setup and teardown -------------------------------------------------------------------------

    def __enter__(self) -> ThrottledImage:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _setup(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("needs root (loop devices, mount, cgroups, drop_caches)")
        if not (BLKIO / "blkio.throttle.read_bps_device").exists():
            raise RuntimeError(f"no cgroup v1 blkio throttling at {BLKIO}")
        self.work.mkdir(parents=True, exist_ok=True)
        stack = self._stack
        stack.callback(_rmtree, self.stage)
        self.stage.mkdir()
        allocated = 0
        entries = 0
        for name, source in self.sources.items():
            subprocess.run(["cp", "-al", str(source), str(self.stage / name)], check=True)
            size, count = tree_allocated(source)
            allocated += size
            entries += count
        # data + ~6% ext4 metadata (inode tables, bitmaps, journal) + margin; rounded to MiB
        self.image_bytes = ((int(allocated * 1.10) + 96 * 2**20 + entries * 4096) >> 20) << 20
        stack.callback(_unlink, self.image)
        with self.image.open("wb") as out:
            out.truncate(self.image_bytes)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "ftusb", "-d", str(self.stage), str(self.image)],
            check=True,
        )
        _rmtree(self.stage)  # the image holds the tree now
        self.device = subprocess.run(
            ["losetup", "-r", "-f", "--show", str(self.image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        stack.callback(_losetup_detach, self.device)
        rdev = os.stat(self.device).st_rdev
        self.devno = f"{os.major(rdev)}:{os.minor(rdev)}"
        self.mount.mkdir()
        stack.callback(_rmdir, self.mount)
        subprocess.run(["mount", "-o", "ro,noload", self.device, str(self.mount)], check=True)
        stack.callback(_umount, self.mount)
        self.cgroup.mkdir()
        stack.callback(_remove_cgroup, self.cgroup)
        (self.cgroup / "blkio.throttle.read_bps_device").write_text(f"{self.devno} {self.read_bps}\n")
        if self.read_iops:
            (self.cgroup / "blkio.throttle.read_iops_device").write_text(f"{self.devno} {self.read_iops}\n")

    # -- counters -----------------------------------------------------------------------------------

    def device_read_bytes(self) -> int:
        fields = Path(f"/sys/block/{Path(self.device).name}/stat").read_text().split()
        return int(fields[2]) * 512

    def cgroup_read_bytes(self) -> int:
        for line in (self.cgroup / "blkio.throttle.io_service_bytes").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == self.devno and parts[1] == "Read":
                return int(parts[2])
        return 0

    # -- running ------------------------------------------------------------------------------------

    def run(self, command: list[str], throttled: bool = True, cold: bool = True) -> Run:
        """Run command (in the cgroup if throttled) after dropping caches; wall time from spawn to exit."""
        if cold and not drop_caches():
            raise RuntimeError("could not drop caches")
        if throttled:
            command = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs"), *command]
        device_before = self.device_read_bytes()
        cgroup_before = self.cgroup_read_bytes()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            stdout = process.stdout.read() if process.stdout else ""
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
        return Run(
            wall=wall,
            returncode=process.returncode,
            inblock_bytes=usage.ru_inblock * 512,
            device_bytes=self.device_read_bytes() - device_before,
            cgroup_bytes=self.cgroup_read_bytes() - cgroup_before,
            stdout=stdout,
        )

    def check(self, file: Path, megabytes: int = 100) -> tuple[float, float]:
        """dd megabytes of file, cold, inside the cgroup then outside: (throttled, free) MB/s."""
        count = min(megabytes, file.stat().st_size >> 20)
        command = ["dd", f"if={file}", "of=/dev/null", "bs=1M", f"count={count}", "status=none"]
        throttled = self.run(command)
        free = self.run(command, throttled=False)
        size = count << 20
        return size / throttled.wall / 1e6, size / free.wall / 1e6


def _rmtree(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()


def _umount(path: Path) -> None:
    for _ in range(10):
        if subprocess.run(["umount", str(path)], check=False).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(path)], check=False)  # last resort: detach lazily


def _losetup_detach(device: str) -> None:
    for _ in range(10):
        if subprocess.run(["losetup", "-d", device], check=False).returncode == 0:
            return
        time.sleep(0.5)


def _remove_cgroup(cgroup: Path) -> None:
    for _ in range(20):
        try:
            pids = (cgroup / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            return
        for pid in pids:  # normally none: every child has exited
            with contextlib.suppress(OSError):
                (BLKIO / "cgroup.procs").write_text(pid + "\n")
        try:
            cgroup.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.25)
