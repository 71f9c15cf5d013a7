"""The kiosk's keys for its journal: its Ed25519 device key (created at first start, 0600) and the
station's X25519 public key that every segment key is sealed to.

Both are PEM files (filters/keys.py conventions). The device key path must end in ``.key``; its
public half is written next to it as ``.pub``.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> first = load_or_create_device_key(folder / "device.key")
    >>> same = load_or_create_device_key(folder / "device.key")
    >>> raw_public(first.public_key()) == raw_public(same.public_key())
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from filters.errors import KeyFileError
from filters.keys import generate_key_pair, load_pem_public_key, load_private_key

PRIVATE_SUFFIX = ".key"


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create_device_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the device key, creating it (and its ``.pub``) on first start."""
    path = Path(path)
    if path.suffix != PRIVATE_SUFFIX:
        raise KeyFileError(path, f"a device key file name must end in {PRIVATE_SUFFIX}")
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise KeyFileError(path, f"cannot make its folder: {err.strerror}") from err
        try:
            generate_key_pair(path.with_suffix(""))
        except KeyFileError:
            if not path.exists():  # not a lost race with another first start
                raise
    return load_private_key(path)


def load_x25519_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    return load_pem_public_key(path, X25519PublicKey, "an X25519 public key (the station's journal key)")
