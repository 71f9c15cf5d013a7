"""Journaled values as words for a person, for the station's pages: any value (hostile, of any type)
becomes text, a number with grouped digits, a size, a time, a length of time or the words for a code;
never a Python repr, never an exception. ``station.report`` and ``station.blocks_view`` build their
views with these; the templates make them printable and escape them.

Example::

    >>> size_text(31_914_983_424), number(1430), words({"priority": "priority"}, 5)
    ('31.9 GB (31,914,983,424 bytes)', '1,430', '5')
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 16_384  # characters of one value on a page (a path of 60 KB is cut, saying so)
MAX_ITEMS = 200  # items of a list or map shown inside one value
MAX_BITS = 128  # integers larger than this are not numbers anyone journaled
PRIORITY_WORDS = {"priority": "priority", "other": "other"}


@dataclass
class Fact:
    label: str
    value: str
    detail: str = ""
    mono: bool = False  # an identifier, a digest: shown in a fixed-width font


def text(value: object, limit: int = MAX_TEXT, depth: int = 0) -> str:
    """Any journaled value as words for a person: yes/no for booleans, grouped digits, lists and
    maps spelled out; never a Python repr, never an exception. Made printable when shown."""
    if value is None:
        out = ""
    elif isinstance(value, bool):
        out = "yes" if value else "no"
    elif isinstance(value, int):
        out = number(value)
    elif isinstance(value, float):
        out = _float_text(value)
    elif isinstance(value, str):
        out = value
    elif isinstance(value, bytes):
        out = value[: limit // 2].hex()
    elif depth > 8:
        out = "…"
    elif isinstance(value, list | tuple):
        parts = [text(v, limit, depth + 1) for v in value[:MAX_ITEMS]]
        out = ", ".join(p for p in parts if p) + _more(len(value))
    elif isinstance(value, dict):
        pairs = [
            (text(k, 200, depth + 1), text(v, limit, depth + 1)) for k, v in list(value.items())[:MAX_ITEMS]
        ]
        out = "; ".join(f"{k}: {v}" for k, v in pairs if v) + _more(len(value))
    else:
        out = type(value).__name__
    return cut(out, limit)


def cut(value: str, limit: int = MAX_TEXT) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({number(len(value) - limit)} more characters not shown)"


def number(value: object) -> str:
    """An integer with grouped digits; other values as ``text``."""
    if not isinstance(value, int) or isinstance(value, bool):
        return text(value)
    if value.bit_length() > MAX_BITS:
        return f"a number of {value.bit_length():,} bits (not shown)"
    return f"{value:,}"


def _float_text(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "not a number"
    if abs(value) >= 1e15:
        return f"{value:.3e}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _more(count: int) -> str:
    return f" … and {count - MAX_ITEMS:,} more" if count > MAX_ITEMS else ""


def size_text(value: object) -> str:
    """``31.9 GB (31,914,983,424 bytes)``; a value that is no size as text."""
    if not isinstance(value, int) or isinstance(value, bool):
        return text(value)
    if value < 0 or value.bit_length() > 80:
        return f"{number(value)} bytes (not a possible size)"
    if value < 1000:
        return f"{value:,} bytes"
    amount, shown_unit = float(value), "bytes"
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        amount, shown_unit = amount / 1000, unit
        if amount < 1000:
            break
    return f"{amount:.1f} {shown_unit} ({value:,} bytes)"


def time_text(stamp_ns: int | None) -> str:
    """``2026-12-02 01:38:46 UTC``; "" for none; said so when out of any calendar."""
    moment = _moment(stamp_ns)
    if moment is None:
        return "" if stamp_ns is None else f"out of range ({number(stamp_ns)} ns since 1970)"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_text(stamp_ns: int | None) -> str:
    """ISO 8601 for ``<time datetime>``, CSV and JSON; "" for none or out of range."""
    moment = _moment(stamp_ns)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else ""


def _moment(stamp_ns: int | None) -> dt.datetime | None:
    if not isinstance(stamp_ns, int) or isinstance(stamp_ns, bool):
        return None
    try:
        moment = dt.datetime.fromtimestamp(stamp_ns // 1_000_000_000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return moment if 1 <= moment.year <= 9999 else None


def span_text(nanoseconds: int) -> str:
    """A length of time for a person: ``3 years 12 days``, ``4 min 12 s``, ``0.02 s``."""
    seconds = abs(nanoseconds) / 1e9
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.0f} s"
    units = (("year", 365 * 86400), ("day", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts, rest = [], int(seconds)
    for name, length in units:
        count, rest = divmod(rest, length)
        if count:
            plural = "s" if count > 1 and name in ("year", "day") else ""
            parts.append(f"{count:,} {name}{plural}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def duration_text(seconds: object, started_ns: int | None, finished_ns: int | None) -> str:
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds < 1e9:
        return span_text(int(seconds * 1e9))
    if isinstance(started_ns, int) and isinstance(finished_ns, int) and finished_ns >= started_ns:
        return span_text(finished_ns - started_ns)
    return ""


def words(table: Mapping[str, str], value: object, missing: str = "") -> str:
    """The words for a journaled code, or the code itself (as text) when it is not one we know."""
    if isinstance(value, str) and value in table:
        return table[value]
    shown = text(value, 200)
    return shown or missing


def path_of(entry: Mapping[str, Any]) -> str:
    """The exact path of a hit or problem (``path_b64``), else its printable ``path``."""
    encoded = entry.get("path_b64")
    if isinstance(encoded, str) and len(encoded) <= 4 * MAX_TEXT:
        try:
            return cut(os.fsdecode(base64.b64decode(encoded, validate=True)))
        except (ValueError, binascii.Error):
            pass
    return text(entry.get("path"))
