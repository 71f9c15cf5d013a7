"""Ed25519 signing keys of filter providers, their key ids, and a kiosk's trust store.

Key files are PEM: ``PREFIX.key`` holds the PKCS#8 private key (mode 0600, never overwritten) and
``PREFIX.pub`` the SubjectPublicKeyInfo public key, so openssl and other tools can read both. A key
id is the first 16 bytes of BLAKE3 over the raw 32-byte public key, written as 32 hex digits.

A trust store is built from public key files and folders of them (every ``*.pub`` inside). Key
files are read through ``filters.safe_files``: a FIFO or a device is refused at once, never waited on.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> private_path, public_path = generate_key_pair(folder / "provider")
    >>> store = TrustStore.from_paths([folder])
    >>> store.key_ids() == [key_id(load_private_key(private_path).public_key())]
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import blake3
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from filters.errors import KeyFileError
from filters.safe_files import read_regular_file

KEY_ID_BYTES = 16
MAX_KEY_FILE_BYTES = 64 * 1024


def key_id_bytes(public_key: Ed25519PublicKey) -> bytes:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return blake3.blake3(raw).digest(KEY_ID_BYTES)


def key_id(public_key: Ed25519PublicKey) -> str:
    return key_id_bytes(public_key).hex()


def generate_key_pair(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (0600) and ``PREFIX.pub``; refuse to overwrite either."""
    prefix = Path(prefix)
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyFileError(path, "already exists (refusing to overwrite a key)")
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_new_key_file(private_path, private_pem, 0o600)
    try:
        write_new_key_file(public_path, public_pem, 0o644)
    except KeyFileError:
        private_path.unlink()
        raise
    return private_path, public_path


def write_new_key_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never over an existing file), write and fsync it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as err:
        raise KeyFileError(path, f"cannot create: {err.strerror}") from err
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    """A key file's bytes: never blocks (a FIFO or a device is refused), at most 64 KiB."""
    return read_regular_file(path, MAX_KEY_FILE_BYTES, KeyFileError, "a key file")


def _pem_holds(data: bytes, label: bytes) -> bool:
    """Whether ``data`` has a PEM block whose label ends in ``label`` (``PRIVATE KEY`` also matches
    ``ENCRYPTED PRIVATE KEY`` and ``OPENSSH PRIVATE KEY``): the other half of a key pair."""
    return re.search(rb"-----BEGIN [A-Z0-9 ]*" + label + rb"-----", data) is not None


def _twin(path: Path, suffix: str) -> str:
    """`` (NAME.pub)`` for ``NAME.key`` and the reverse: the file of the key pair that was meant."""
    twins = {".key": ".pub", ".pub": ".key"}
    if twins.get(path.suffix) != suffix:
        return ""
    return f" ({path.with_suffix(suffix).name})"


PrivateKeyT = TypeVar("PrivateKeyT")
PublicKeyT = TypeVar("PublicKeyT")


def load_pem_private_key(path: str | os.PathLike[str], kind: type[PrivateKeyT], what: str) -> PrivateKeyT:
    """The private key of type ``kind`` in a PEM file (no passphrase); ``what`` names it in errors."""
    path = Path(path)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        if _pem_holds(data, b"PUBLIC KEY"):
            raise KeyFileError(
                path, f"a public key, not {what}: give its private key{_twin(path, '.key')}"
            ) from err
        raise KeyFileError(path, "not a PEM private key without a passphrase") from err
    if not isinstance(key, kind):
        raise KeyFileError(path, f"not {what}")
    return key


def load_pem_public_key(path: str | os.PathLike[str], kind: type[PublicKeyT], what: str) -> PublicKeyT:
    """The public key of type ``kind`` in a PEM file; ``what`` names it in errors."""
    path = Path(path)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        if _pem_holds(data, b"PRIVATE KEY"):
            twin = _twin(path, ".pub")
            reason = (
                f"a private key, not {what}: give its public key{twin} instead, and keep this file offline"
            )
            raise KeyFileError(path, reason) from err
        raise KeyFileError(path, "not a PEM public key") from err
    if not isinstance(key, kind):
        raise KeyFileError(path, f"not {what}")
    return key


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    return load_pem_private_key(path, Ed25519PrivateKey, "an Ed25519 private key")


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return load_pem_public_key(path, Ed25519PublicKey, "an Ed25519 public key")


@dataclass
class TrustStore:
    """The public keys whose filters a kiosk accepts, by key id.

    ``problems`` lists key files inside trust folders that could not be used (they are skipped, so
    one broken file does not take every provider's filters down); a key file named directly that
    cannot be used raises ``KeyFileError``.
    """

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    problems: list[KeyFileError] = field(default_factory=list)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> TrustStore:
        store = cls()
        for given in paths:
            path = Path(given)
            if path.is_dir():
                for candidate in sorted(path.glob("*.pub")):
                    try:
                        store.add(candidate, load_public_key(candidate))
                    except KeyFileError as err:
                        store.problems.append(err)
            elif path.exists():
                store.add(path, load_public_key(path))
            else:
                raise KeyFileError(path, "no such trust key file or folder")
        return store

    def add(self, source: Path, public_key: Ed25519PublicKey) -> None:
        identifier = key_id(public_key)
        self.keys[identifier] = public_key
        self.sources.setdefault(identifier, source)

    def key_ids(self) -> list[str]:
        return sorted(self.keys)

    def get(self, identifier: str) -> Ed25519PublicKey | None:
        return self.keys.get(identifier)
