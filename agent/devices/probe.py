"""What is on a partition: ``blkid -p`` (low-level superblock probing, read-only, no cache).

Example::

    >>> parse_blkid_export("TYPE=ext4\\nUUID=1234\\nLABEL=Photos\\nUSAGE=filesystem\\n").label
    'Photos'
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

BLKID_TIMEOUT = 30.0


@dataclass(frozen=True)
class FilesystemProbe:
    """``fs_type`` is blkid's TYPE ('' when nothing was recognised); ``usage`` its USAGE."""

    fs_type: str = ""
    uuid: str = ""
    label: str = ""
    usage: str = ""
    version: str = ""
    ambiguous: bool = False
    error: str = ""


def parse_blkid_export(text: str) -> FilesystemProbe:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return FilesystemProbe(
        fs_type=values.get("TYPE", ""),
        uuid=values.get("UUID", ""),
        label=values.get("LABEL", ""),
        usage=values.get("USAGE", ""),
        version=values.get("VERSION", ""),
    )


def probe_filesystem(device_path: str) -> FilesystemProbe:
    """Probe ``device_path``; never raises (an error is reported in the result)."""
    try:
        done = subprocess.run(
            ["blkid", "-p", "-o", "export", "-c", "/dev/null", device_path],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=BLKID_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return FilesystemProbe(error=f"blkid failed: {err}")
    if done.returncode == 2:
        return FilesystemProbe()
    if done.returncode == 8:
        return FilesystemProbe(ambiguous=True, error="more than one filesystem signature (ambivalent probe)")
    if done.returncode != 0:
        return FilesystemProbe(error=f"blkid exit {done.returncode}: {done.stderr.strip()[:200]}")
    return parse_blkid_export(done.stdout)
