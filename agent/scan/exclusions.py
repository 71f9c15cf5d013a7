"""Exclusions: files an analyst at the station reviewed as false positives, never hits again.

A hit the analyst reviews as ``false_positive`` and chooses to exclude (``fieldtriage station review
set ... --state false_positive --exclude``) goes to every kiosk of the unit on the next sync stick,
in one list signed with the station's signing key (the key kiosks check sync tokens with,
``paths.station_signing_key``). At the kiosk, a file some filter matches and whose digests match an
exclusion is not a hit: the scan report lists it in ``skipped`` with code ``excluded`` and a reason
naming the exclusion and its list, and no light turns red for it. It is never silent.

**Matching.** An exclusion matches a file only on a collision-resistant whole-file digest (SHA-256
or BLAKE3) that the kiosk computed for it (the confirmation read of a hit computes SHA-256), and
only when every other digest both hold agrees as well. A sample digest alone is not enough: a benign
file that collided with a known item shares the known item's sample digest, and excluding it would
exclude the known item too; MD5 and SHA-1 collisions can be made on purpose. A hit whose file was
not read whole (quick mode; a filter with no whole-file sets) stays a hit.

**The list** replaces the one before as a whole (so an exclusion the analyst takes back leaves the
kiosks with the next stick), and only when it was issued later (``issued_ns``): an older stick never
brings back an older list.

**File** (``exclusions.ftx``, at most 32 MiB): one canonical CBOR map, read with the bounded
decoder of filters (filters/strict_cbor.py), every key required, unknown keys refused:

==============  =================================================================================
``format``      ``"fieldtriage-exclusions"``
``version``     ``1``
``key_id``      bytes(16): the station signing key's id (filters/keys.py)
``signature``   bytes(64): Ed25519 over ``"fieldtriage station exclusions v1" || 0x00 || payload``
``payload``     bytes: a CBOR map ``list_id`` (text, 32 hex digits), ``issued_ns`` (uint),
                ``salt`` (bytes(32), random per list), ``exclusions`` (array of at most 50,000 maps
                ``id`` (text, at most 64) and ``digests``: a map of digest kind to bytes(32), with
                ``sha256`` or ``blake3`` among them)
==============  =================================================================================

Each digest is keyed, ``BLAKE3(key = salt, "fieldtriage exclusion v1" || 0x00 || kind || 0x00 ||
digest)`` (32 bytes), so the list on a stick or a kiosk names no file's digest.

Example::

    >>> import hashlib, os
    >>> benign = os.urandom(5000)
    >>> digests = {"sha256": hashlib.sha256(benign).digest(), "md5": hashlib.md5(benign).digest()}
    >>> excluded = make_exclusion_list([("x1", digests)], issued_ns=1)
    >>> excluded.match(digests).exclusion_id
    'x1'
    >>> excluded.match({"md5": digests["md5"]}) is None   # MD5 alone never excludes
    True
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.scan.report import Problem
from filters.digests import DIGEST_KINDS, DIGEST_SIZES
from filters.errors import FilterBuildError, FilterRefused
from filters.keys import KEY_ID_BYTES, key_id_bytes
from filters.safe_files import read_regular_file
from filters.strict_cbor import CborError, decode

EXCLUSIONS_NAME = "exclusions.ftx"  # on the stick (fieldtriage-exclusions/) and in paths.filters
FORMAT_NAME = "fieldtriage-exclusions"
VERSION = 1
SIGNATURE_CONTEXT = b"fieldtriage station exclusions v1\x00"
KEY_DOMAIN = b"fieldtriage exclusion v1\x00"
ID_DOMAIN = b"fieldtriage exclusion id v1\x00"
STRONG_KINDS = ("sha256", "blake3")  # the kinds an exclusion can match on
SALT_BYTES = 32
KEYED_BYTES = 32
SIGNATURE_BYTES = 64
MAX_FILE_BYTES = 32 << 20
MAX_EXCLUSIONS = 50_000
MAX_ID = 64
EXCLUDED_CODE = "excluded"


def keyed_digest(salt: bytes, kind: str, digest: bytes) -> bytes:
    """What a list holds for ``digest`` of ``kind`` (see the module docstring)."""
    return blake3.blake3(KEY_DOMAIN + kind.encode("ascii") + b"\x00" + digest, key=salt).digest(KEYED_BYTES)


def exclusion_id_of(digests: Mapping[str, bytes]) -> str:
    """The id of the exclusion of a file with ``digests`` (the same file: the same id, on every list):
    16 hex digits of BLAKE3 over its SHA-256 (else its BLAKE3); raises when it has neither."""
    kind = next((k for k in STRONG_KINDS if k in digests), None)
    if kind is None:
        raise FilterBuildError("exclusion", "no SHA-256 or BLAKE3 digest: it could never match safely")
    return blake3.blake3(ID_DOMAIN + kind.encode("ascii") + b"\x00" + digests[kind]).hexdigest(8)


@dataclass(frozen=True)
class Exclusion:
    exclusion_id: str
    digests: Mapping[str, bytes]  # kind -> keyed digest

    def agrees(self, keyed: Mapping[str, bytes]) -> bool:
        """True when a file's keyed digests match on a strong kind and on every kind both hold."""
        common = set(self.digests) & set(keyed)
        return bool(common & set(STRONG_KINDS)) and all(self.digests[k] == keyed[k] for k in common)


@dataclass(frozen=True)
class ExclusionList:
    list_id: str
    issued_ns: int
    salt: bytes
    exclusions: tuple[Exclusion, ...]
    signer: str | None = None
    source: str = "<memory>"
    _index: dict[tuple[str, bytes], list[Exclusion]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, bytes], list[Exclusion]] = {}
        for exclusion in self.exclusions:
            for kind in STRONG_KINDS:
                if kind in exclusion.digests:
                    index.setdefault((kind, bytes(exclusion.digests[kind])), []).append(exclusion)
        object.__setattr__(self, "_index", index)

    def match(self, digests: Mapping[str, bytes]) -> Exclusion | None:
        """The exclusion that matches a file's computed ``digests`` (kind -> raw digest), if any."""
        if not self.exclusions or not any(k in digests for k in STRONG_KINDS):
            return None
        keyed = {k: keyed_digest(self.salt, k, bytes(d)) for k, d in digests.items() if k in DIGEST_KINDS}
        for kind in STRONG_KINDS:
            for candidate in self._index.get((kind, keyed.get(kind, b"")), ()):
                if candidate.agrees(keyed):
                    return candidate
        return None

    def excluded_entry(self, path: bytes, digests: Mapping[str, bytes]) -> Problem | None:
        """The ``skipped`` entry a matched file gets instead of being a hit; None when not excluded."""
        found = self.match(digests)
        if found is None:
            return None
        kinds = ", ".join(k for k in DIGEST_KINDS if k in found.digests and k in digests)
        return Problem(
            path,
            f"reviewed as a false positive at the station: exclusion {found.exclusion_id} of list "
            f"{self.list_id} ({kinds} matched); not a hit",
            EXCLUDED_CODE,
        )

    def describe(self) -> dict[str, Any]:
        """What the kiosk journals about the list it carries (the station knows its entries by id)."""
        return {
            "list_id": self.list_id,
            "issued": dt.datetime.fromtimestamp(self.issued_ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "issued_ns": self.issued_ns,
            "count": len(self.exclusions),
            "signer": self.signer,
        }


def make_exclusion_list(
    entries: Iterable[tuple[str, Mapping[str, bytes]]],
    *,
    issued_ns: int,
    list_id: str | None = None,
    salt: bytes | None = None,
) -> ExclusionList:
    """A list from (exclusion id, raw digests by kind) pairs; each needs a SHA-256 or BLAKE3."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    made: list[Exclusion] = []
    seen: set[str] = set()
    for exclusion_id, digests in entries:
        if exclusion_id in seen or not 0 < len(exclusion_id) <= MAX_ID:
            raise FilterBuildError(exclusion_id, "exclusion ids must be unique, 1 to 64 characters")
        seen.add(exclusion_id)
        for kind, digest in digests.items():
            if len(digest) != DIGEST_SIZES.get(kind, -1):
                raise FilterBuildError(exclusion_id, f"digest of {len(digest)} bytes is not a {kind}")
        if not any(k in digests for k in STRONG_KINDS):
            raise FilterBuildError(exclusion_id, "no SHA-256 or BLAKE3 digest: it could never match safely")
        made.append(
            Exclusion(exclusion_id, {k: keyed_digest(salt, k, d) for k, d in sorted(digests.items())})
        )
    if len(made) > MAX_EXCLUSIONS:
        raise FilterBuildError("exclusions", f"{len(made)} exclusions, at most {MAX_EXCLUSIONS} in one list")
    return ExclusionList(list_id or uuid.uuid4().hex, issued_ns, salt, tuple(made))


def encode_exclusions(excluded: ExclusionList, signing_key: Ed25519PrivateKey) -> bytes:
    payload: bytes = cbor2.dumps(
        {
            "list_id": excluded.list_id,
            "issued_ns": excluded.issued_ns,
            "salt": excluded.salt,
            "exclusions": [
                {"id": e.exclusion_id, "digests": {k: bytes(v) for k, v in e.digests.items()}}
                for e in excluded.exclusions
            ],
        },
        canonical=True,
    )
    envelope = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "key_id": key_id_bytes(signing_key.public_key()),
        "signature": signing_key.sign(SIGNATURE_CONTEXT + payload),
        "payload": payload,
    }
    encoded: bytes = cbor2.dumps(envelope, canonical=True)
    return encoded


def write_exclusions(path: Path, excluded: ExclusionList, signing_key: Ed25519PrivateKey) -> Path:
    data = encode_exclusions(excluded, signing_key)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise FilterBuildError(path, f"cannot write: {err.strerror}") from err
    return path


def load_exclusions(path: Path, station_key: Ed25519PublicKey) -> ExclusionList:
    """The list in ``path``, verified against the station's signing key; ``FilterRefused`` naming
    the file and the reason when anything is wrong (nothing of a refused list is used)."""
    data = read_regular_file(path, MAX_FILE_BYTES, FilterRefused, "an exclusion list")
    try:
        envelope = decode(data)
    except CborError as err:
        raise FilterRefused(path, f"not an exclusion list (malformed: {err})") from err
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT_NAME:
        raise FilterRefused(path, "not a fieldtriage exclusion list")
    if set(envelope) != {"format", "version", "key_id", "signature", "payload"}:
        raise FilterRefused(path, "exclusion list: unknown or missing envelope fields")
    if envelope["version"] != VERSION:
        raise FilterRefused(path, f"unsupported exclusion list version {envelope['version']!r}")
    key, signature, payload = envelope["key_id"], envelope["signature"], envelope["payload"]
    if not isinstance(key, memoryview) or len(key) != KEY_ID_BYTES:
        raise FilterRefused(path, "malformed signer key id")
    if not isinstance(signature, memoryview) or len(signature) != SIGNATURE_BYTES:
        raise FilterRefused(path, "malformed signature")
    if not isinstance(payload, memoryview):
        raise FilterRefused(path, "no payload")
    if bytes(key) != key_id_bytes(station_key):
        raise FilterRefused(path, f"signed by {bytes(key).hex()}, not by this kiosk's station")
    try:
        station_key.verify(bytes(signature), SIGNATURE_CONTEXT + bytes(payload))
    except InvalidSignature as err:
        raise FilterRefused(path, "station signature does not verify: exclusion list refused") from err
    try:
        fields = decode(payload)
    except CborError as err:
        raise FilterRefused(path, f"malformed payload: {err}") from err
    return _list_from_payload(path, fields, bytes(key).hex())


def _list_from_payload(path: Path, fields: object, signer: str) -> ExclusionList:
    if not isinstance(fields, dict) or set(fields) != {"list_id", "issued_ns", "salt", "exclusions"}:
        raise FilterRefused(
            path, "exclusion list: payload fields are not list_id, issued_ns, salt, exclusions"
        )
    list_id, issued, salt, raw = fields["list_id"], fields["issued_ns"], fields["salt"], fields["exclusions"]
    if not isinstance(list_id, str) or not 0 < len(list_id) <= MAX_ID:
        raise FilterRefused(path, "exclusion list: field 'list_id' is not text of 1 to 64")
    if not isinstance(issued, int) or isinstance(issued, bool) or not 0 <= issued < 1 << 64:
        raise FilterRefused(path, "exclusion list: field 'issued_ns' is not an integer below 2^64")
    if not isinstance(salt, memoryview) or len(salt) != SALT_BYTES:
        raise FilterRefused(path, f"exclusion list: field 'salt' is not {SALT_BYTES} bytes")
    if not isinstance(raw, list) or len(raw) > MAX_EXCLUSIONS:
        raise FilterRefused(
            path, f"exclusion list: field 'exclusions' is not a list of at most {MAX_EXCLUSIONS}"
        )
    exclusions: list[Exclusion] = []
    seen: set[str] = set()
    for number, item in enumerate(raw):
        where = f"exclusion {number}"
        if not isinstance(item, dict) or set(item) != {"id", "digests"}:
            raise FilterRefused(path, f"{where}: fields are not id, digests")
        ident, digests = item["id"], item["digests"]
        if not isinstance(ident, str) or not 0 < len(ident) <= MAX_ID or ident in seen:
            raise FilterRefused(path, f"{where}: 'id' is not unique text of 1 to 64")
        seen.add(ident)
        if not isinstance(digests, dict) or not digests or set(digests) - set(DIGEST_KINDS):
            raise FilterRefused(path, f"{where}: 'digests' is not a map of digest kinds")
        if not set(digests) & set(STRONG_KINDS):
            raise FilterRefused(path, f"{where}: no sha256 or blake3 digest")
        if any(not isinstance(v, memoryview) or len(v) != KEYED_BYTES for v in digests.values()):
            raise FilterRefused(path, f"{where}: a digest is not {KEYED_BYTES} bytes")
        exclusions.append(Exclusion(ident, {k: bytes(v) for k, v in digests.items()}))
    return ExclusionList(list_id, issued, bytes(salt), tuple(exclusions), signer=signer, source=str(path))
