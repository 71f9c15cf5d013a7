"""The sync token: a station-signed file that makes one stick (by filesystem UUID) a sync stick.

A kiosk mounts a stick read-write only when ``verify_sync_token`` accepts the token on it (read from
a read-only mount first). Anything else (no token, a forged one, one for another stick, an expired
one) leaves the stick evidence: read-only, scanned. The token holds no secret.

The file is one canonical CBOR map ``{format, version, key_id, signature, payload}`` with the
Ed25519 signature over ``TOKEN_CONTEXT || payload``; the payload is a CBOR map
``{fs_uuid, token_id, created, expires}`` (docs/journal-format.md, section 7).

Example::

    >>> import datetime as dt, tempfile, pathlib
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> station = Ed25519PrivateKey.generate()
    >>> stick = pathlib.Path(tempfile.mkdtemp())
    >>> now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    >>> _ = write_sync_token(stick, "1234-ABCD", station, now, dt.timedelta(days=30))
    >>> verify_sync_token(stick, "1234-abcd", station.public_key(), now).fs_uuid
    '1234-abcd'
    >>> verify_sync_token(stick, "9999-0000", station.public_key(), now)
    'token is for filesystem 1234-abcd, this stick is 9999-0000'
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from filters.errors import JournalError
from filters.keys import key_id_bytes
from filters.strict_cbor import CborError, decode

TOKEN_NAME = "fieldtriage-sync.token"
TOKEN_FORMAT = "fieldtriage-sync-token"
TOKEN_VERSION = 1
TOKEN_CONTEXT = b"fieldtriage sync token v1\x00"
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True)
class SyncToken:
    fs_uuid: str
    token_id: str
    created: int
    expires: int
    signer: str
    raw: bytes = field(default=b"", repr=False, compare=False)  # the token file's bytes, as verified


def normalised_uuid(fs_uuid: str) -> str:
    return fs_uuid.strip().lower()


def write_sync_token(
    folder: Path, fs_uuid: str, station_key: Ed25519PrivateKey, now: dt.datetime, valid_for: dt.timedelta
) -> Path:
    """Write the token for the filesystem ``fs_uuid`` into ``folder`` (the stick's root)."""
    if not normalised_uuid(fs_uuid):
        raise JournalError("fs_uuid", "empty filesystem UUID")
    payload = cbor2.dumps(
        {
            "fs_uuid": normalised_uuid(fs_uuid),
            "token_id": secrets.token_hex(16),
            "created": int(now.timestamp()),
            "expires": int((now + valid_for).timestamp()),
        },
        canonical=True,
    )
    envelope = cbor2.dumps(
        {
            "format": TOKEN_FORMAT,
            "version": TOKEN_VERSION,
            "key_id": key_id_bytes(station_key.public_key()),
            "signature": station_key.sign(TOKEN_CONTEXT + payload),
            "payload": payload,
        },
        canonical=True,
    )
    path = folder / TOKEN_NAME
    temporary = folder / f".{TOKEN_NAME}.tmp"
    try:
        with temporary.open("wb") as f:
            f.write(envelope)
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise JournalError(path, f"cannot write the sync token: {err.strerror}") from err
    return path


def read_token_bytes(path: Path) -> bytes | str:
    """A token file's bytes (at most ``MAX_TOKEN_BYTES``), or why they cannot be read (one line)."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        return "no sync token"
    except OSError as err:
        return f"sync token unreadable: {err.strerror}"
    if len(data) > MAX_TOKEN_BYTES:
        return "sync token oversized"
    return data


def verify_sync_token(
    folder: Path, fs_uuid: str, station_key: Ed25519PublicKey, now: dt.datetime
) -> SyncToken | str:
    """The token when it is valid for this stick now, else the reason it is not (one line).

    Only the expiry is checked against ``now``: a kiosk without a battery clock may be behind.
    """
    data = read_token_bytes(Path(folder) / TOKEN_NAME)
    if isinstance(data, str):
        return data
    token = verify_token_bytes(data, station_key)
    if isinstance(token, str):
        return token
    if token.fs_uuid != normalised_uuid(fs_uuid):
        return f"token is for filesystem {token.fs_uuid}, this stick is {normalised_uuid(fs_uuid)}"
    if now.timestamp() >= token.expires:
        return f"sync token expired at {dt.datetime.fromtimestamp(token.expires, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    return token


def verify_token_bytes(data: bytes, station_key: Ed25519PublicKey) -> SyncToken | str:
    """The token these bytes hold when the station signed it, else why not (one line); neither the
    stick it names nor its expiry is checked (the clock helper, agent/daemon/clock_step.py, takes
    only its ``created`` from it: the station's time when it prepared the stick)."""
    if len(data) > MAX_TOKEN_BYTES:
        return "sync token oversized"
    try:
        envelope = decode(data)
        if not isinstance(envelope, dict) or envelope.get("format") != TOKEN_FORMAT:
            return "not a sync token"
        if envelope.get("version") != TOKEN_VERSION or set(envelope) != {
            "format",
            "version",
            "key_id",
            "signature",
            "payload",
        }:
            return "unsupported sync token version or fields"
        key_id, signature, payload = envelope["key_id"], envelope["signature"], envelope["payload"]
        if not all(isinstance(v, memoryview) for v in (key_id, signature, payload)):
            return "malformed sync token"
        if bytes(key_id) != key_id_bytes(station_key):
            return f"token signed by key {bytes(key_id).hex()}, not by this kiosk's station"
        station_key.verify(bytes(signature), TOKEN_CONTEXT + bytes(payload))
        fields = decode(payload)
    except CborError as err:
        return f"malformed sync token: {err}"
    except InvalidSignature:
        return "sync token signature does not verify (forged or altered)"
    token = _token_from_fields(fields, bytes(key_id).hex())
    return token if isinstance(token, str) else replace(token, raw=bytes(data))


def _token_from_fields(fields: object, signer: str) -> SyncToken | str:
    if not isinstance(fields, dict) or set(fields) != {"fs_uuid", "token_id", "created", "expires"}:
        return "malformed sync token payload"
    uuid, token_id, created, expires = (fields[k] for k in ("fs_uuid", "token_id", "created", "expires"))
    if not (
        isinstance(uuid, str)
        and isinstance(token_id, str)
        and isinstance(created, int)
        and isinstance(expires, int)
    ):
        return "malformed sync token payload"
    return SyncToken(uuid, token_id, created, expires, signer)
