"""Which devices the kiosk takes: match rules on udev properties, and never the system's own disk.

A rule is ``KEY=PATTERN`` (shell wildcards) or ``KEY!=PATTERN`` on a udev property; a device is
selected when every rule holds. The default is ``ID_BUS=usb`` (USB disks and card readers). Whatever
the rules say, a disk holding a mounted filesystem of this system, or its swap, is never selected.

Example::

    >>> selector = DeviceSelector([parse_rule("ID_BUS=usb")], system_disks=set())
    >>> selector.refusal({"ID_BUS": "usb", "DEVNAME": "/dev/sdb"}, "8:16")
    ''
    >>> selector.refusal({"ID_BUS": "ata"}, "8:0")
    'does not match ID_BUS=usb'
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from filters.errors import UsageError

DEFAULT_RULES = ("ID_BUS=usb",)
SYSTEM_MOUNT_POINTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "/home", "/opt", "/srv")


@dataclass(frozen=True)
class MatchRule:
    key: str
    pattern: str
    negated: bool = False

    def holds(self, properties: Mapping[str, str]) -> bool:
        matched = fnmatch.fnmatchcase(properties.get(self.key, ""), self.pattern)
        return matched != self.negated

    def __str__(self) -> str:
        return f"{self.key}{'!=' if self.negated else '='}{self.pattern}"


def parse_rule(text: str) -> MatchRule:
    negated = "!=" in text
    key, sep, pattern = text.partition("!=" if negated else "=")
    key = key.strip()
    if not sep or not key or not key.replace("_", "").isalnum():
        raise UsageError(text, "a match rule is KEY=PATTERN or KEY!=PATTERN on a udev property")
    return MatchRule(key, pattern.strip(), negated)


def system_disk_numbers(
    mountinfo: Path = Path("/proc/self/mountinfo"), swaps: Path = Path("/proc/swaps")
) -> set[str]:
    """MAJOR:MINOR of the disks holding the system's filesystems or swap, and of their parents.

    Only system mount points count: a seized device that something else mounted is still evidence.
    """
    numbers: set[str] = set()
    try:
        for line in mountinfo.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) > 4 and not fields[2].startswith("0:") and fields[4] in SYSTEM_MOUNT_POINTS:
                numbers.add(fields[2])
    except OSError:
        pass
    try:
        for line in swaps.read_text(errors="replace").splitlines()[1:]:
            device = line.split()[0] if line.split() else ""
            if device.startswith("/dev/"):
                rdev = os.stat(device).st_rdev
                numbers.add(f"{os.major(rdev)}:{os.minor(rdev)}")
    except OSError:
        pass
    return numbers | {parent for number in numbers for parent in _holders_and_parents(number)}


def _holders_and_parents(number: str) -> set[str]:
    """The disk a partition belongs to, and the disks under a device-mapper or md device."""
    found: set[str] = set()
    base = Path("/sys/dev/block") / number
    try:
        real = base.resolve()
    except OSError:
        return found
    if (real / "partition").exists():
        parent_dev = real.parent / "dev"
        if parent_dev.exists():
            found.add(parent_dev.read_text().strip())
    slaves = real / "slaves"
    if slaves.is_dir():
        for slave in slaves.iterdir():
            dev = slave / "dev"
            if dev.exists():
                slave_number = dev.read_text().strip()
                found.add(slave_number)
                found |= _holders_and_parents(slave_number)
    return found


class DeviceSelector:
    def __init__(self, rules: Iterable[MatchRule], system_disks: set[str] | None = None) -> None:
        self.rules = list(rules)
        self.system_disks = system_disk_numbers() if system_disks is None else system_disks

    @classmethod
    def from_texts(cls, texts: Iterable[str] = DEFAULT_RULES) -> DeviceSelector:
        return cls([parse_rule(text) for text in texts])

    def refusal(self, properties: Mapping[str, str], number: str) -> str:
        """Why the disk is not taken ('' when it is)."""
        if number in self.system_disks:
            return "holds this system's own filesystems"
        for rule in self.rules:
            if not rule.holds(properties):
                return f"does not match {rule}"
        return ""

    def refresh_system_disks(self) -> None:
        self.system_disks = system_disk_numbers()
