"""The errors of fieldtriage, one hierarchy for every layer.

Every error a user or a device can cause is a ``FieldtriageError``: its ``str()`` is one line that
names the file, device or field it concerns and the reason, and the command line prints exactly that
line (no traceback). Backend errors (OSError, cbor2, cryptography) are wrapped with that context.

Example::

    >>> str(FilterRefused("kiosk.ftf", "signature does not verify"))
    'kiosk.ftf: signature does not verify'
"""

from __future__ import annotations

import os
import unicodedata

# Unicode categories that change how a line displays without being visible themselves: format
# characters (bidi overrides and isolates, zero-width joiners, BOM, soft hyphen), line and paragraph
# separators, surrogates, private use and unassigned code points.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


class FieldtriageError(Exception):
    """Base: ``subject`` is what the error is about (a path, device or field), ``reason`` why."""

    def __init__(self, subject: str | os.PathLike[str], reason: str) -> None:
        self.subject = os.fspath(subject)
        self.reason = reason
        super().__init__(f"{printable(self.subject)}: {reason}")


class UsageError(FieldtriageError):
    """Bad command-line arguments or configuration values."""


class KeyFileError(FieldtriageError):
    """A key file that cannot be read, parsed or written."""


class FilterRefused(FieldtriageError):
    """A filter file that must not be used: truncated, malformed, unsigned, untrusted, expired..."""


class ImportFailed(FieldtriageError):
    """An input to ``filter build`` that cannot be read, or a bad record under ``--strict``."""


class FilterBuildError(FieldtriageError):
    """A filter that cannot be built or written."""


def printable(text: str) -> str:
    """``text`` with control characters, undecodable bytes and invisible format characters (bidi
    overrides such as U+202E, which can make ``gpj.exe`` display as ``exe.jpg``) escaped, so that
    one terminal line shows the name as it is.

    >>> print(printable("photo\u202egpj.exe\u200b\x1b"))
    photo\\u202egpj.exe\\u200b\\x1b
    """
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte from a non-UTF-8 name
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            out.append(repr(ch)[1:-1] if ch in "\t\n\r" else f"\\x{code:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif code > 0x7F and unicodedata.category(ch) in INVISIBLE_CATEGORIES:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


class DeviceError(FieldtriageError):
    """A device that cannot be opened, mapped or identified."""


class MountError(FieldtriageError):
    """A filesystem that cannot be mounted read-only."""


class ConfigError(FieldtriageError):
    """A configuration file or key that cannot be used."""


class JournalError(FieldtriageError):
    """A journal that cannot be opened, written or read: a fault the daemon must signal."""


class JournalLocked(JournalError):
    """A journal folder another process (a second agent) is writing."""


class StationError(FieldtriageError):
    """A station home, key, database, import source or report that cannot be used."""
