"""The signed filter file: encode and sign on the workstation, check and load on the kiosk.

A filter file is a CBOR map (the envelope) holding the payload bytes, the signer's key id and an
Ed25519 signature over ``SIGNATURE_CONTEXT || payload``; the payload is a CBOR map with the metadata
and the sets. docs/filter-format.md specifies both. Loading checks, in order: size, envelope,
signer in the trust store, signature, then every field, count, length and geometry of the payload,
then the validity period. Any failure raises ``FilterRefused`` naming the file and the reason, and
nothing of the filter is used.

Example::

    >>> import tempfile, pathlib
    >>> from filters.keys import generate_key_pair, load_private_key, TrustStore
    >>> from filters.builder import FilterBuilder
    >>> from filters.importers import DigestEntry
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> key_path, pub_path = generate_key_pair(folder / "lab")
    >>> builder = FilterBuilder(name="demo")
    >>> builder.add(DigestEntry("sha1", bytes(20), "known", "priority"))
    >>> write_filter(folder / "demo.ftf", builder.build_unsigned(), load_private_key(key_path))
    >>> loaded = load_filter(folder / "demo.ftf", TrustStore.from_paths([pub_path]))
    >>> loaded.metadata.name, loaded.entry_count
    ('demo', 1)
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from filters.digests import BLOCK_KIND, DIGEST_KINDS, SET_KINDS
from filters.errors import FilterBuildError, FilterRefused
from filters.fuse import FuseFilter, FuseGeometry
from filters.importers import PRIORITIES
from filters.keys import KEY_ID_BYTES, TrustStore, key_id_bytes
from filters.model import SALT_BYTES, BlockSetInfo, ContrabandFilter, FilterMetadata, FilterSet, iso_time
from filters.safe_files import read_regular_file
from filters.strict_cbor import CborError, decode

FORMAT_NAME = "fieldtriage-filter"
ENVELOPE_VERSION = 1
# 2: the sample digest samples aligned 4 KiB blocks (docs/filter-format.md, section 6); 3: block sets
# (section 7). A filter without a block set is written as version 2, which earlier kiosks read.
FORMAT_VERSION = 3
FORMAT_VERSIONS = (2, 3)  # read
BLOCK_FORMAT_VERSION = 3
BLOCK_SIZE = 4096
MAX_SUBSAMPLE = 1 << 16
SIGNATURE_CONTEXT = b"fieldtriage filter signature v1\x00"
SIGNATURE_BYTES = 64
MAX_FILE_BYTES = 2 << 30
MAX_SETS = 1024
MAX_TEXT = {"name": 256, "provider": 256, "description": 4096, "builder": 128, "category": 128}
FILTER_SUFFIX = ".ftf"
EXPIRY_WARNING_DAYS = 14  # a filter expiring sooner than this is warned about (filter verify, kiosk)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Envelope:
    key_id: bytes
    signature: bytes
    payload: memoryview


def format_version_for(sets: list[FilterSet]) -> int:
    """The lowest format version that holds ``sets``: 3 with a block set, else 2."""
    return BLOCK_FORMAT_VERSION if any(s.kind == BLOCK_KIND for s in sets) else 2


def _set_map(s: FilterSet) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": s.kind,
        "category": s.category,
        "priority": s.priority,
        "count": s.count,
        "item_group": s.item_group,
        "seed": s.fuse.seed,
        "segment_length": s.fuse.geometry.segment_length,
        "segment_count_length": s.fuse.geometry.segment_count_length,
        "array_length": s.fuse.geometry.array_length,
        "fingerprints": s.fuse.fingerprints.astype("<u4", copy=False).tobytes(),
    }
    if s.kind == BLOCK_KIND:
        info = s.block or BlockSetInfo(1, 0, 0)
        out |= {
            "block_size": info.block_size,
            "subsample": info.subsample,
            "items": info.items,
            "dense_items": info.dense_items,
        }
    return out


def encode_payload(contraband: ContrabandFilter) -> bytes:
    meta = contraband.metadata
    payload: dict[str, Any] = {
        "format_version": format_version_for(contraband.sets),
        "filter_id": meta.filter_id,
        "name": meta.name,
        "provider": meta.provider,
        "description": meta.description,
        "created": meta.created,
        "not_before": meta.not_before,
        "expires": meta.expires,
        "builder": meta.builder,
        "salt": contraband.salt,
        "sets": [_set_map(s) for s in contraband.sets],
    }
    encoded: bytes = cbor2.dumps(payload, canonical=True)
    return encoded


def encode_filter(contraband: ContrabandFilter, signing_key: Ed25519PrivateKey) -> bytes:
    payload = encode_payload(contraband)
    envelope = {
        "format": FORMAT_NAME,
        "envelope_version": ENVELOPE_VERSION,
        "key_id": key_id_bytes(signing_key.public_key()),
        "signature": signing_key.sign(SIGNATURE_CONTEXT + payload),
        "payload": payload,
    }
    encoded: bytes = cbor2.dumps(envelope, canonical=True)
    return encoded


def write_filter(
    path: str | os.PathLike[str], contraband: ContrabandFilter, signing_key: Ed25519PrivateKey
) -> None:
    """Sign and write atomically (a reader never sees a half-written filter)."""
    path = Path(path)
    data = encode_filter(contraband, signing_key)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise FilterBuildError(path, f"cannot write: {err.strerror}") from err


def read_envelope(path: Path, data: bytes) -> Envelope:
    try:
        envelope = decode(data)
    except CborError as err:
        raise FilterRefused(path, f"not a filter file (malformed envelope: {err})") from err
    if not isinstance(envelope, dict) or envelope.get("format") != FORMAT_NAME:
        raise FilterRefused(path, "not a fieldtriage filter file")
    if envelope.get("envelope_version") != ENVELOPE_VERSION:
        raise FilterRefused(path, f"unsupported envelope version {envelope.get('envelope_version')!r}")
    unknown = set(envelope) - {"format", "envelope_version", "key_id", "signature", "payload"}
    if unknown:
        raise FilterRefused(path, f"unknown envelope field {sorted(unknown)[0]!r}")
    key, signature, payload = envelope.get("key_id"), envelope.get("signature"), envelope.get("payload")
    if not isinstance(payload, memoryview):
        raise FilterRefused(path, "envelope has no payload")
    if signature is None:
        raise FilterRefused(path, "unsigned")
    if not isinstance(signature, memoryview) or len(signature) != SIGNATURE_BYTES:
        raise FilterRefused(path, "malformed signature")
    if not isinstance(key, memoryview) or len(key) != KEY_ID_BYTES:
        raise FilterRefused(path, "malformed signer key id")
    return Envelope(bytes(key), bytes(signature), payload)


def read_filter_bytes(path: Path) -> bytes:
    """The file's bytes; never blocks (a FIFO or device named ``*.ftf`` is refused unopened)."""
    data = read_regular_file(path, MAX_FILE_BYTES, FilterRefused, "a filter file")
    if not data:
        raise FilterRefused(path, "empty file")
    return data


def load_filter(
    path: str | os.PathLike[str],
    trust: TrustStore | None,
    *,
    now: dt.datetime | None = None,
    check_validity: bool = True,
) -> ContrabandFilter:
    """Load a filter, verified against ``trust`` (``None`` only for ``inspect``: unverified)."""
    path = Path(path)
    data = read_filter_bytes(path)
    envelope = read_envelope(path, data)
    signer = envelope.key_id.hex()
    if trust is not None:
        public_key = trust.get(signer)
        if public_key is None:
            raise FilterRefused(path, f"signer {signer} is not in the trust store")
        try:
            public_key.verify(envelope.signature, SIGNATURE_CONTEXT + envelope.payload)
        except InvalidSignature as err:
            raise FilterRefused(path, f"signature does not verify (signer {signer})") from err
    try:
        payload = decode(envelope.payload)
    except CborError as err:
        raise FilterRefused(path, f"malformed payload: {err}") from err
    contraband = _filter_from_payload(path, payload, signer, len(data))
    if check_validity:
        problem = contraband.metadata.validity_problem(now or dt.datetime.now(dt.UTC))
        if problem:
            raise FilterRefused(path, problem)
    return contraband


@dataclass(frozen=True)
class Expiry:
    """When a filter expires, seen at some moment: ``days_left`` whole days (rounded down, 0 in its
    last day), ``soon`` when fewer than the warning period's days are left."""

    expires: int
    days_left: int
    soon: bool

    @property
    def date(self) -> str:
        return iso_time(self.expires)

    def warning(self) -> str:
        """The line a person is shown: ``expires in 2 days (2026-06-03T00:00:00Z)``."""
        if self.days_left == 0:
            return f"expires in less than a day ({self.date})"
        return f"expires in {self.days_left} day{'s' if self.days_left != 1 else ''} ({self.date})"


def expiry_of(
    metadata: FilterMetadata, now: dt.datetime, warning_days: int = EXPIRY_WARNING_DAYS
) -> Expiry | None:
    """The expiry of a filter valid at ``now`` (None when it never expires)."""
    if metadata.expires is None:
        return None
    left = max(0, metadata.expires - int(now.timestamp()))
    return Expiry(metadata.expires, left // SECONDS_PER_DAY, left < warning_days * SECONDS_PER_DAY)


class _Fields:
    """Typed access to a decoded CBOR map; every failure names the field."""

    def __init__(self, path: Path, where: str, mapping: object, allowed: set[str]) -> None:
        if not isinstance(mapping, dict):
            raise FilterRefused(path, f"{where} is not a map")
        unknown = set(mapping) - allowed
        if unknown:
            raise FilterRefused(path, f"{where}: unknown field {sorted(unknown)[0]!r}")
        self.path, self.where, self.mapping = path, where, mapping

    def _get(self, name: str, optional: bool = False) -> object:
        if name not in self.mapping:
            raise FilterRefused(self.path, f"{self.where}: missing field {name!r}")
        value = self.mapping[name]
        if value is None and not optional:
            raise FilterRefused(self.path, f"{self.where}: field {name!r} is null")
        return value

    def uint(self, name: str, limit: int = 1 << 64, optional: bool = False) -> int | None:
        value = self._get(name, optional)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            raise FilterRefused(self.path, f"{self.where}: field {name!r} is not an integer below {limit}")
        return value

    def required_uint(self, name: str, limit: int = 1 << 64) -> int:
        value = self.uint(name, limit)
        assert value is not None
        return value

    def text(self, name: str, choices: tuple[str, ...] | None = None) -> str:
        value = self._get(name)
        limit = MAX_TEXT.get(name, 64)
        if not isinstance(value, str) or len(value) > limit:
            raise FilterRefused(self.path, f"{self.where}: field {name!r} is not text of at most {limit}")
        if choices is not None and value not in choices:
            raise FilterRefused(self.path, f"{self.where}: field {name!r} has unknown value {value!r}")
        return value

    def blob(self, name: str, length: int) -> memoryview:
        value = self._get(name)
        if not isinstance(value, memoryview) or len(value) != length:
            raise FilterRefused(self.path, f"{self.where}: field {name!r} is not {length} bytes")
        return value


PAYLOAD_FIELDS = {
    "format_version", "filter_id", "name", "provider", "description", "created",
    "not_before", "expires", "builder", "salt", "sets",
}  # fmt: skip
SET_FIELDS = {
    "kind", "category", "priority", "count", "item_group", "seed", "segment_length",
    "segment_count_length", "array_length", "fingerprints",
}  # fmt: skip
BLOCK_SET_FIELDS = {"block_size", "subsample", "items", "dense_items"}  # block sets only (version 3)


def _filter_from_payload(path: Path, payload: object, signer: str, size: int) -> ContrabandFilter:
    fields = _Fields(path, "payload", payload, PAYLOAD_FIELDS)
    version = fields.required_uint("format_version")
    if version == 1:
        raise FilterRefused(
            path, "filter format version 1 (an older sample digest): rebuild it with this release"
        )
    if version not in FORMAT_VERSIONS:
        raise FilterRefused(path, f"unsupported filter format version {version}")
    metadata = FilterMetadata(
        filter_id=fields.text("filter_id"),
        name=fields.text("name"),
        provider=fields.text("provider"),
        description=fields.text("description"),
        created=fields.required_uint("created"),
        not_before=fields.uint("not_before", optional=True),
        expires=fields.uint("expires", optional=True),
        format_version=version,
        builder=fields.text("builder"),
    )
    salt = bytes(fields.blob("salt", SALT_BYTES))
    raw_sets = fields._get("sets")
    if not isinstance(raw_sets, list) or not 0 < len(raw_sets) <= MAX_SETS:
        raise FilterRefused(path, f"payload: field 'sets' must list 1 to {MAX_SETS} sets")
    sets = [_set_from_fields(path, index, raw, version) for index, raw in enumerate(raw_sets)]
    return ContrabandFilter(metadata, salt, sets, signer_key_id=signer, source=str(path), size=size)


def _set_from_fields(path: Path, index: int, raw: object, version: int) -> FilterSet:
    is_block = isinstance(raw, dict) and raw.get("kind") == BLOCK_KIND
    if is_block and version < BLOCK_FORMAT_VERSION:
        raise FilterRefused(path, f"set {index}: a block set needs format version {BLOCK_FORMAT_VERSION}")
    fields = _Fields(path, f"set {index}", raw, SET_FIELDS | BLOCK_SET_FIELDS if is_block else SET_FIELDS)
    count = fields.required_uint("count", 1 << 32)
    geometry = FuseGeometry(
        segment_length=fields.required_uint("segment_length", 1 << 32),
        segment_count_length=fields.required_uint("segment_count_length", 1 << 32),
        array_length=fields.required_uint("array_length", 1 << 32),
    )
    if not geometry.is_consistent() or geometry != FuseGeometry.for_size(count):
        raise FilterRefused(path, f"set {index}: table geometry does not match its count {count}")
    table = fields.blob("fingerprints", geometry.array_length * 4)
    fingerprints = np.frombuffer(table, dtype="<u4").astype(np.uint32, copy=False)
    priority = fields.text("priority", PRIORITIES)
    block = None
    if is_block:
        if fields.required_uint("block_size") != BLOCK_SIZE:
            raise FilterRefused(path, f"set {index}: field 'block_size' is not {BLOCK_SIZE}")
        subsample = fields.required_uint("subsample", MAX_SUBSAMPLE + 1)
        items = fields.required_uint("items", 1 << 32)
        dense = fields.required_uint("dense_items", 1 << 32)
        if subsample < 1 or dense > items:
            raise FilterRefused(path, f"set {index}: 'subsample' below 1 or more dense items than items")
        block = BlockSetInfo(subsample, items, dense, BLOCK_SIZE)
    return FilterSet(
        index=index,
        kind=fields.text("kind", SET_KINDS if version >= BLOCK_FORMAT_VERSION else DIGEST_KINDS),
        category=fields.text("category"),
        priority="priority" if priority == "priority" else "other",
        count=count,
        item_group=fields.uint("item_group", 1 << 32, optional=True),
        fuse=FuseFilter(fields.required_uint("seed"), geometry, fingerprints),
        block=block,
    )
