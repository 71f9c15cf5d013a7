"""The ``vics`` input: Project VIC VICS JSON, versions 1.3 (root ``odata.metadata``) and 2.0
(root ``@odata.context``), records in the root ``value`` array.

The file is streamed with ijson (C backend), one record in memory at a time. Per record:

- ``Category`` (integer or numeric string) picks the priority: in
  ``ImportOptions.vics_priority_categories`` "priority", in ``vics_other_categories`` "other", any
  other category is left out. Entries are labelled ``vics-<category>``.
- digests come from ``MD5``, ``SHA1``, ``SHA256``, ``AlternativeHashes[]`` whose ``HashName`` is
  md5, sha1, sha256 or blake3 (PhotoDNA, PDQ and others are ignored) and ``MediaFiles[].MD5/SHA1``,
  each (kind, digest) once per record.
- a record with ``MediaSize`` 0 is left out.

Field names are those of the VICS schema, case included. A record with no Category, no digest or a
malformed digest is a bad record ``record N`` (1-based) and gives no entry at all. Invalid JSON stops
the import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, BinaryIO

import ijson

from filters.errors import ImportFailed
from filters.importers import DigestEntry, ImportOptions, ImportReport, Priority
from filters.importers.common import (
    UTF8_BOM,
    ZERO_LENGTH,
    admit,
    one_line,
    open_binary,
    parse_hex_digest,
    quote,
)

MAX_QUOTED = 40  # bytes of a file that is not JSON quoted in its error
RECORD_FIELDS = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256"}
MEDIA_FILE_FIELDS = {"MD5": "md5", "SHA1": "sha1"}
ALTERNATIVE_KINDS = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "blake3": "blake3"}


class _BadRecord(ValueError):
    """Why a record gives no entry."""


def read_vics(
    path: str | os.PathLike[str], options: ImportOptions, report: ImportReport
) -> Iterator[DigestEntry]:
    """The entries of a VICS JSON file, streamed."""
    source = os.fspath(path)
    with open_binary(source) as stream:
        _check_root(stream, source, _skip_bom(stream))
        records = ijson.items(stream, "value.item")
        number = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except ijson.JSONError as err:
                raise ImportFailed(source, f"invalid JSON after record {number}: {one_line(err)}") from err
            number += 1
            try:
                classified = _classify(record, options, report)
            except _BadRecord as err:
                report.bad(source, f"record {number}", str(err))
                continue
            if classified is None:
                continue
            label, priority, digests = classified
            for kind, digest in digests:
                entry = DigestEntry(kind, digest, label, priority)
                if admit(report, source, entry):
                    yield entry


def _skip_bom(stream: BinaryIO) -> int:
    """Read past a UTF-8 byte order mark (yajl refuses one); the offset where the JSON starts."""
    peek = getattr(stream, "peek", None)
    head = peek(len(UTF8_BOM))[: len(UTF8_BOM)] if peek is not None else b""
    if head == UTF8_BOM:
        stream.read(len(UTF8_BOM))
        return len(UTF8_BOM)
    return 0


def _check_root(stream: BinaryIO, source: str, start: int) -> None:
    """Refuse what is not JSON at all (a CSV, a hash list), and a JSON document whose root has no
    ``value`` array; leave ``stream`` where the JSON starts (``start``).

    VICS writers put the metadata key first, so this reads only the first few events.
    """
    if not stream.seekable():
        return
    events = ijson.parse(stream)
    first: str | None = None  # the first event, once there is one
    try:
        for prefix, event, value in events:
            if first is None:
                first = event
                if event not in ("start_map", "start_array"):
                    next(events, None)  # a lone scalar is JSON; one followed by more text is not
                    break
            if prefix == "" and event == "start_map":
                continue
            if prefix == "" and event != "map_key":
                break
            if prefix == "" and value == "value":
                _, event, _ = next(events)
                if event == "start_array":
                    stream.seek(start)
                    return
                break
    except (ijson.JSONError, StopIteration) as err:
        if isinstance(err, ijson.JSONError) and first not in ("start_map", "start_array"):
            raise ImportFailed(source, f"{_not_json(stream, start)}: not a VICS JSON file") from err
        raise ImportFailed(source, f"invalid JSON after record 0: {one_line(err)}") from err
    raise ImportFailed(source, 'no "value" array at the root: not a VICS JSON file')


def _not_json(stream: BinaryIO, start: int) -> str:
    """What the file holds instead of JSON, its first line quoted: ``not JSON (it begins 'MD5;SHA1')``."""
    stream.seek(start)
    line = stream.read(MAX_QUOTED).split(b"\n", 1)[0].rstrip(b"\r")
    return f"not JSON (it begins {quote(line)})" if line else "empty file"


def _classify(
    record: Any, options: ImportOptions, report: ImportReport
) -> tuple[str, Priority, list[tuple[str, bytes]]] | None:
    """(category label, priority, digests) of a record, or None when it is left out."""
    if not isinstance(record, dict):
        raise _BadRecord(f"not a JSON object but {type(record).__name__}")
    category = _category(record.get("Category"))
    priority: Priority
    if category in options.vics_priority_categories:
        priority = "priority"
    elif category in options.vics_other_categories:
        priority = "other"
    else:
        report.leave_out(f"VICS category {category}")
        return None
    if _is_zero(record.get("MediaSize")):
        report.leave_out(ZERO_LENGTH)
        return None
    return f"vics-{category}", priority, _record_digests(record)


def _category(value: object) -> str:
    """The category as a canonical decimal string."""
    if value is None:
        raise _BadRecord("no Category")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return str(int(value))
    raise _BadRecord(f"Category is not a number: {quote(value)}")


def _is_zero(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | Decimal):
        return value == 0
    return isinstance(value, str) and value.strip() == "0"


def _record_digests(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Every (kind, digest) of a record, each once, in the order found."""
    found: dict[tuple[str, bytes], None] = {}
    for field, kind in RECORD_FIELDS.items():
        _add(found, record.get(field), kind, field)

    alternatives = record.get("AlternativeHashes")
    for index, item in enumerate(_list_field(alternatives, "AlternativeHashes")):
        where = f"AlternativeHashes[{index}]"
        item = _object(item, where)
        hash_name = item.get("HashName")
        if not isinstance(hash_name, str):
            raise _BadRecord(f"{where}.HashName is not a string: {quote(hash_name)}")
        alternative_kind = ALTERNATIVE_KINDS.get(hash_name.lower().replace("-", "").replace("_", ""))
        if alternative_kind is not None:
            _add(found, item.get("HashValue"), alternative_kind, f"{where}.HashValue")

    for index, item in enumerate(_list_field(record.get("MediaFiles"), "MediaFiles")):
        where = f"MediaFiles[{index}]"
        item = _object(item, where)
        for field, kind in MEDIA_FILE_FIELDS.items():
            _add(found, item.get(field), kind, f"{where}.{field}")

    if not found:
        raise _BadRecord("no MD5, SHA1, SHA256 or usable AlternativeHashes/MediaFiles digest")
    return list(found)


def _add(found: dict[tuple[str, bytes], None], value: object, kind: str, field: str) -> None:
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise _BadRecord(f"{field} is not a string: {quote(value)}")
    try:
        found[(kind, parse_hex_digest(value, kind))] = None
    except ValueError as err:
        raise _BadRecord(f"{field}: {err}") from err


def _list_field(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRecord(f"{field} is not a list")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _BadRecord(f"{where} is not an object")
    return value
