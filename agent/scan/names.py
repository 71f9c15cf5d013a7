"""Paths as the scan keeps them (bytes, exactly as on the media) and as it shows them.

Names on seized media need not be UTF-8 and may hold newlines or terminal escape sequences. The scan
works on ``bytes`` paths throughout; ``shown`` makes one safe terminal line of a path (control
characters and undecodable bytes escaped), ``path_b64`` keeps the exact bytes for a JSON report.

Example::

    >>> shown(b"DCIM/a\\nb\\x1b[31m\\xff.jpg")
    'DCIM/a\\\\nb\\\\x1b[31m\\\\xff.jpg'
    >>> path_b64(b"\\xff"), path_from_b64("/w==")
    ('/w==', b'\\xff')
"""

from __future__ import annotations

import base64
import os

from filters.errors import printable


def shown(path: bytes) -> str:
    """One printable line for ``path`` (lossy only in how it looks: see ``path_b64``)."""
    return printable(os.fsdecode(path))


def path_b64(path: bytes) -> str:
    """The exact bytes of ``path`` in base64 (standard alphabet, padded)."""
    return base64.b64encode(path).decode("ascii")


def path_from_b64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def child_path(parent: bytes, name: bytes) -> bytes:
    return parent + name if parent.endswith(b"/") else parent + b"/" + name
