"""A strict, bounded CBOR decoder for untrusted filter files.

It accepts only the subset our writer produces (RFC 8949 definite-length items: unsigned and negative
integers, byte and text strings, arrays, maps with text keys, null, true, false), checks every
length against the bytes that remain before using it, limits nesting depth and item counts, and
returns byte strings as zero-copy memoryview slices (a 45 MB fingerprint table is never copied).
Anything else raises ``CborError`` with the byte offset where decoding stopped.

Example::

    >>> decode(bytes.fromhex("a2616101616282f6f5"))
    {'a': 1, 'b': [None, True]}
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 8
MAX_ITEMS = 1_000_000


class CborError(ValueError):
    """Not a well-formed item of the accepted subset."""


def decode(data: bytes | memoryview) -> Any:
    """Decode exactly one item that fills ``data``; trailing bytes are an error."""
    view = memoryview(data).cast("B")
    value, end = _Decoder(view).item(0, 0)
    if end != len(view):
        raise CborError(f"{len(view) - end} trailing bytes at offset {end}")
    return value


class _Decoder:
    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.items = 0

    def _head(self, pos: int) -> tuple[int, int, int]:
        view = self.view
        if pos >= len(view):
            raise CborError(f"truncated at offset {pos}")
        initial = view[pos]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, pos + 1
        if info > 27:
            raise CborError(f"unsupported additional information {info} at offset {pos}")
        width = 1 << (info - 24)
        if pos + 1 + width > len(view):
            raise CborError(f"truncated at offset {pos}")
        value = int.from_bytes(view[pos + 1 : pos + 1 + width], "big")
        return major, value, pos + 1 + width

    def item(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise CborError(f"nested deeper than {MAX_DEPTH} at offset {pos}")
        self.items += 1
        if self.items > MAX_ITEMS:
            raise CborError(f"more than {MAX_ITEMS} items")
        start = pos
        major, arg, pos = self._head(pos)
        if major == 0:
            return arg, pos
        if major == 1:
            return -1 - arg, pos
        if major in (2, 3):
            end = pos + arg
            if end > len(self.view):
                raise CborError(f"string of {arg} bytes at offset {start} runs past the end")
            chunk = self.view[pos:end]
            if major == 2:
                return chunk, end
            try:
                return bytes(chunk).decode("utf-8"), end
            except UnicodeDecodeError as err:
                raise CborError(f"text at offset {start} is not UTF-8") from err
        if major == 4:
            if arg > len(self.view) - pos:
                raise CborError(f"array of {arg} items at offset {start} runs past the end")
            items = []
            for _ in range(arg):
                value, pos = self.item(pos, depth + 1)
                items.append(value)
            return items, pos
        if major == 5:
            if arg > (len(self.view) - pos) // 2:
                raise CborError(f"map of {arg} pairs at offset {start} runs past the end")
            result: dict[str, Any] = {}
            for _ in range(arg):
                key_at = pos
                key, pos = self.item(pos, depth + 1)
                if not isinstance(key, str):
                    raise CborError(f"map key at offset {key_at} is not text")
                if key in result:
                    raise CborError(f"duplicate map key {key!r} at offset {key_at}")
                result[key], pos = self.item(pos, depth + 1)
            return result, pos
        if major == 7 and arg in (20, 21, 22) and self.view[start] & 0x1F == arg:
            return {20: False, 21: True, 22: None}[arg], pos
        raise CborError(f"unsupported item (major type {major}) at offset {start}")
