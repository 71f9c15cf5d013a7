"""NTFS names that the streams view hides: a name holding ':' (NTFS allows it; Linux writes it).

ntfs-3g with ``streams_interface=windows`` (the view the kiosk scans, so that named data streams open
as ``file:stream``) leaves out of every listing a name that holds ':', and opens ``a:b`` as stream
``b`` of ``a``: such files are never read there. The mounter therefore mounts the partition a second
time, through a loop device of its own (two ``fuseblk`` mounts of one device share the first's
driver), with ``streams_interface=none``, where every name is listed; ``hidden_names`` walks that
view (names only, no file is opened) and each name found makes the partition a problem: the device
is never ``no_match``.

Example (root)::

    count, examples, error = hidden_names(Path("/run/fieldtriage/mounts/sdb-1a2b/p1-names"))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from agent.devices.mount_rules import COMMON_OPTIONS, MountPlan
from agent.devices.partitions import Partition
from agent.devices.system import MountBackend
from filters.errors import DeviceError, printable

NAMES_VIEW = MountPlan("fuse", "ntfs", "ntfs-3g", f"{COMMON_OPTIONS},streams_interface=none")
EXAMPLES = 3
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
DETACH_TIMEOUT = 5.0


def names_view_problem(
    backend: MountBackend,
    fd: int,
    partition: Partition,
    target: Path,
    try_plan: Callable[[MountPlan, str, Path], str | None],
) -> str:
    """Mount ``partition`` of the device open at ``fd`` as the names view at ``target`` (through
    ``try_plan``, which reads the options back), list it and take it down again: '' when no name
    is hidden from the streams view, else the partition's problem."""
    try:
        loop = backend.attach_loop(fd, partition.start, partition.size)
    except DeviceError as err:
        return f"could not check for names holding ':' (hidden by the streams view): {err.reason}"
    try:
        target.mkdir(mode=0o700, exist_ok=True)
        error = try_plan(NAMES_VIEW, loop.path, target)
        if error is None:
            try:
                count, examples, error = hidden_names(target)
            finally:
                try:
                    backend.unmount(target)
                except OSError as err:
                    error = error or f"cannot unmount {target}: {err.strerror or err}"
    except OSError as err:
        count, examples, error = 0, [], err.strerror or str(err)
    finally:
        loop.close()
        detached = loop.wait_detached(DETACH_TIMEOUT)
        with contextlib.suppress(OSError):
            target.rmdir()
    if count:
        listed = ", ".join(examples) + (", ..." if count > len(examples) else "")
        return f"{count} names holding ':' cannot be read beside named streams, not checked ({listed})"
    if error is not None:
        return f"could not check for names holding ':' (hidden by the streams view): {error}"
    return "" if detached else f"{loop.path} (names view) still attached"


def hidden_names(root: Path) -> tuple[int, list[str], str | None]:
    """(how many names under ``root`` hold ':', the first few paths (printable), why the walk could
    not finish or None). Depth first, one open folder per level, never through a symbolic link."""
    count, examples = 0, list[str]()
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[int, str, list[str]]] = []  # (folder, its path, subfolders not yet listed)

    def enter(fd: int, prefix: str) -> None:
        nonlocal count
        try:
            info = os.fstat(fd)
            subfolders = []
            if (info.st_dev, info.st_ino) not in visited:
                visited.add((info.st_dev, info.st_ino))
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if ":" in entry.name:
                            count += 1
                            if len(examples) < EXAMPLES:
                                examples.append(printable(prefix + entry.name))
                        if entry.is_dir(follow_symlinks=False):
                            subfolders.append(entry.name)
        except BaseException:
            os.close(fd)
            raise
        stack.append((fd, prefix, subfolders))

    try:
        enter(os.open(root, DIR_FLAGS), "")
        while stack:
            fd, prefix, subfolders = stack[-1]
            if not subfolders:
                os.close(fd)
                stack.pop()
                continue
            name = subfolders.pop()
            enter(os.open(name, DIR_FLAGS, dir_fd=fd), f"{prefix}{name}/")
    except OSError as err:
        where = printable(stack[-1][1]) if stack else "/"
        return count, examples, f"listing names under {where or '/'} failed: {err.strerror or err}"
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return count, examples, None
