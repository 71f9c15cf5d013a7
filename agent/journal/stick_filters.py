"""Take new filters, trust keys and the station's exclusions from a verified sync stick.

Trust keys (``fieldtriage-trust/NAME.pub``) are taken only with a valid station signature in
``NAME.pub.sig`` (64 bytes: Ed25519 over ``TRUST_CONTEXT || pub file bytes``); they are stored as
``KEY_ID.pub``. Filters (``fieldtriage-filters/*.ftf``) are taken only when they load against the
trust store (with the new keys): signed by a trusted provider, well-formed, valid now. The
exclusion list (``fieldtriage-exclusions/exclusions.ftx``: reviewed false positives,
agent/scan/exclusions.py) is taken only when the station signed it and it was issued after the one
the kiosk holds; it is kept as ``exclusions.ftx`` in the filter folder and replaces the one before.
Whatever is refused is listed with its reason and left on the stick.

Example::

    >>> import tempfile, pathlib
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> result = import_filters_from_stick(root, root / "filters", root / "trust",
    ...                                    Ed25519PrivateKey.generate().public_key())
    >>> result.filters_added, result.trust_added, result.exclusions_taken, result.refused
    ([], [], None, [])
"""

from __future__ import annotations

import datetime as dt
import filecmp
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal.copying import copy_atomically
from agent.scan.exclusions import EXCLUSIONS_NAME, load_exclusions
from filters.container import FILTER_SUFFIX, load_filter
from filters.errors import FieldtriageError, JournalError
from filters.keys import MAX_KEY_FILE_BYTES, TrustStore, key_id, load_public_key
from filters.safe_files import read_regular_file

FILTER_FOLDER = "fieldtriage-filters"
TRUST_FOLDER = "fieldtriage-trust"
EXCLUSIONS_FOLDER = "fieldtriage-exclusions"
TRUST_CONTEXT = b"fieldtriage station trust key v1\x00"
SIGNATURE_SUFFIX = ".sig"


@dataclass
class StickImport:
    filters_added: list[Path] = field(default_factory=list)
    trust_added: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one line each: "FILE: reason"
    exclusions_taken: dict[str, object] | None = None  # the new list's description, when taken


def import_filters_from_stick(
    stick_folder: Path,
    filter_folder: Path,
    trust_folder: Path,
    station_key: Ed25519PublicKey,
    now: dt.datetime | None = None,
) -> StickImport:
    result = StickImport()
    try:
        filter_folder.mkdir(parents=True, exist_ok=True)
        trust_folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise JournalError(filter_folder, f"cannot create: {err.strerror}") from err
    for public_path in sorted((stick_folder / TRUST_FOLDER).glob("*.pub")):
        try:
            added = _take_trust_key(public_path, trust_folder, station_key)
        except FieldtriageError as err:
            result.refused.append(str(err))
            continue
        if added is not None:
            result.trust_added.append(added)
    trust = TrustStore.from_paths([trust_folder])
    for filter_path in sorted((stick_folder / FILTER_FOLDER).glob(f"*{FILTER_SUFFIX}")):
        try:
            load_filter(filter_path, trust, now=now)
            destination = filter_folder / filter_path.name
            if _same_content(filter_path, destination):
                continue
            copy_atomically(filter_path, destination)
        except FieldtriageError as err:
            result.refused.append(str(err))
            continue
        result.filters_added.append(destination)
    try:
        result.exclusions_taken = _take_exclusions(stick_folder, filter_folder, station_key)
    except FieldtriageError as err:
        result.refused.append(str(err))
    return result


def _take_exclusions(
    stick_folder: Path, filter_folder: Path, station_key: Ed25519PublicKey
) -> dict[str, object] | None:
    """Take the stick's exclusion list when it is the station's and newer than the one held."""
    offered = stick_folder / EXCLUSIONS_FOLDER / EXCLUSIONS_NAME
    if not os.path.lexists(offered):
        return None
    new = load_exclusions(offered, station_key)
    held_path = filter_folder / EXCLUSIONS_NAME
    if held_path.exists():
        try:
            held = load_exclusions(held_path, station_key)
        except FieldtriageError:
            held = None  # a damaged list is replaced by a good one
        if held is not None and held.list_id == new.list_id:
            return None
        if held is not None and held.issued_ns >= new.issued_ns:
            raise JournalError(
                offered,
                f"issued before the exclusion list this kiosk holds ({held.list_id}): not taken",
            )
    copy_atomically(offered, held_path)
    return new.describe()


def _take_trust_key(public_path: Path, trust_folder: Path, station_key: Ed25519PublicKey) -> Path | None:
    signature_path = public_path.with_name(public_path.name + SIGNATURE_SUFFIX)
    data = read_regular_file(public_path, MAX_KEY_FILE_BYTES, JournalError, "a key file")
    if not signature_path.exists():
        raise JournalError(signature_path, "missing (trust keys need a station signature)")
    signature = read_regular_file(signature_path, 4096, JournalError, "a signature")
    try:
        station_key.verify(signature, trust_key_signed_message(data))
    except InvalidSignature as err:
        raise JournalError(public_path, "station signature does not verify: trust key refused") from err
    destination = trust_folder / f"{key_id(load_public_key(public_path))}.pub"
    if _same_content(public_path, destination):
        return None
    copy_atomically(public_path, destination)
    return destination


def _same_content(source: Path, destination: Path) -> bool:
    if not destination.exists():
        return False
    try:
        return filecmp.cmp(source, destination, shallow=False)
    except OSError as err:
        raise JournalError(destination, f"cannot read: {err.strerror}") from err


def trust_key_signed_message(public_key_file_bytes: bytes) -> bytes:
    """The message the station signs for a trust key (kept here so both sides agree)."""
    return TRUST_CONTEXT + public_key_file_bytes
