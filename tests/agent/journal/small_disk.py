"""A real small filesystem to fill up (root): a tmpfs of a few MiB mounted for one test."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_filesystem(folder: Path, size: int = 4 << 20) -> Iterator[Path]:
    """``folder`` as a tmpfs of ``size`` bytes, unmounted (with everything on it) afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "fieldtriage-test", str(folder)],
        check=True,
    )
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "--lazy", str(folder)], check=False)  # a failed test left files open


def fill(folder: Path, name: str = "filler") -> Path:
    """Write ``folder/name`` until the filesystem has no block left; return its path."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (bytes(1 << 16), bytes(512), bytes(1)):
            while True:
                try:
                    if os.write(fd, chunk) < len(chunk):
                        break
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return path
