"""How many files to read at once: one on a spinning disk, a few on flash.

A rotational disk collapses under parallel reads (seeks), so the default is one worker when the
block device under a root is rotational (``/sys/dev/block/MAJ:MIN/../queue/rotational``, the whole
disk's queue for a partition); otherwise a few workers, enough to overlap reading with hashing.
Roots not on a block device (tmpfs, FUSE, overlay) count as not rotational.

Example::

    >>> default_workers([b"/proc"]) >= 1
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

FLASH_WORKERS_MAX = 4


def is_rotational(path: bytes) -> bool | None:
    """True/False for the block device holding ``path``; None when unknown."""
    try:
        device = os.stat(path).st_dev
    except OSError:
        return None
    sys_dev = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")
    try:
        node = sys_dev.resolve(strict=True)
    except OSError:
        return None
    for candidate in (node, node.parent):
        flag = candidate / "queue" / "rotational"
        try:
            return flag.read_text().strip() == "1"
        except OSError:
            continue
    return None


def default_workers(roots: Sequence[bytes]) -> int:
    """1 if any root is on a rotational disk, else between 2 and 4 (CPUs + 1)."""
    if any(is_rotational(r) for r in roots):
        return 1
    return max(2, min(FLASH_WORKERS_MAX, (os.cpu_count() or 1) + 1))
