"""``fieldtriage station export-vics``: a scan's hits as a Project VIC VICS 2.0 JSON case file.

One Media record per hit: ``MediaID`` (1, 2, ...), ``MD5``/``SHA1`` (upper-case hex) where the
scan computed them, ``MediaSize``, ``Category`` when a matched set's category is a VICS category
number (``3`` or ``vics-3``; the lowest such number wins), and ``MediaFiles`` with the file's name
and folder as found on the device.

Example::

    >>> from station.scans import Scan
    >>> scan = Scan("k" * 32, "s1", hits=[{"path": "/DCIM/a.jpg", "size": 3, "categories": ["vics-1"],
    ...     "digests": {"md5": "00" * 16}}])
    >>> media = vics_case(scan, case_number="2025-17")["value"][0]
    >>> media["Category"], media["MediaFiles"][0]["FileName"], media["MD5"][:4]
    (1, 'a.jpg', '0000')
"""

from __future__ import annotations

import re
from typing import Any

from station.scans import Scan

ODATA_CONTEXT = "http://github.com/ICMEC/ProjectVic/DataModels/2.0.xml/US/$metadata#Media"
CATEGORY = re.compile(r"^(?:vics-?)?([0-9])$", re.IGNORECASE)
HEX_DIGEST = re.compile(r"^[0-9a-fA-F]+$")


def vics_category(categories: object) -> int | None:
    numbers = []
    for category in categories if isinstance(categories, list) else []:
        match = CATEGORY.match(str(category).strip())
        if match:
            numbers.append(int(match.group(1)))
    return min(numbers) if numbers else None


def _digest(digests: dict[str, Any], kind: str, hex_length: int) -> str | None:
    value = digests.get(kind)
    if isinstance(value, str) and len(value) == hex_length and HEX_DIGEST.match(value):
        return value.upper()
    return None


def vics_case(scan: Scan, *, case_number: str | None = None) -> dict[str, Any]:
    media = []
    for media_id, hit in enumerate(scan.hits, start=1):
        digests = _mapping(hit.get("digests"))
        path = str(hit.get("path", ""))
        folder, _, name = path.rpartition("/")
        record: dict[str, Any] = {"MediaID": media_id}
        md5, sha1 = _digest(digests, "md5", 32), _digest(digests, "sha1", 40)
        if md5:
            record["MD5"] = md5
        if sha1:
            record["SHA1"] = sha1
        if isinstance(hit.get("size"), int):
            record["MediaSize"] = hit["size"]
        category = vics_category(hit.get("categories"))
        if category is not None:
            record["Category"] = category
        media_file: dict[str, Any] = {"FileName": name, "FilePath": folder + "/" if folder else "/"}
        if md5:
            media_file["MD5"] = md5
        record["MediaFiles"] = [media_file]
        media.append(record)
    case: dict[str, Any] = {"@odata.context": ODATA_CONTEXT, "SourceApplicationName": "fieldtriage"}
    if case_number:
        case["CaseNumber"] = case_number
    case["value"] = media
    return case


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
