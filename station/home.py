"""The station's home folder: its two key pairs and its database.

* ``journal.key`` / ``journal.pub``: X25519. Kiosks seal every journal segment to the public key;
  only this private key opens them.
* ``signing.key`` / ``signing.pub``: Ed25519. Signs sync-stick tokens and trust keys for kiosks.
* ``station.sqlite``: imported journals.

Private keys are PKCS#8 PEM, mode 0600, never overwritten (filters/keys.py conventions).

Example::

    >>> import tempfile, pathlib
    >>> home = StationHome(pathlib.Path(tempfile.mkdtemp()) / "station")
    >>> home.init()
    >>> home.journal_private_key().public_key() is not None
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.journal.keys import load_x25519_public_key, raw_public
from agent.journal.segment_format import key_id_of_raw
from filters.errors import StationError
from filters.keys import (
    generate_key_pair,
    load_pem_private_key,
    load_private_key,
    load_public_key,
    write_new_key_file,
)

HOME_ENVIRONMENT = "FIELDTRIAGE_STATION_HOME"
DEFAULT_HOME = Path("~/.fieldtriage-station")


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENVIRONMENT) or DEFAULT_HOME).expanduser()


class StationHome:
    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_home()
        self.journal_key_path = self.folder / "journal.key"
        self.journal_public_path = self.folder / "journal.pub"
        self.signing_key_path = self.folder / "signing.key"
        self.signing_public_path = self.folder / "signing.pub"
        self.database_path = self.folder / "station.sqlite"

    def init(self) -> None:
        """Create both key pairs; refuses (StationError) when either already exists."""
        for path in (self.journal_key_path, self.signing_key_path):
            if path.exists():
                raise StationError(
                    path, "already exists: this station is initialised (keys are never replaced)"
                )
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StationError(self.folder, f"cannot create: {err.strerror}") from err
        journal_key = X25519PrivateKey.generate()
        write_new_key_file(
            self.journal_key_path,
            journal_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            0o600,
        )
        write_new_key_file(
            self.journal_public_path,
            journal_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
        generate_key_pair(self.folder / "signing")

    def journal_private_key(self) -> X25519PrivateKey:
        path = self._existing(self.journal_key_path)
        return load_pem_private_key(path, X25519PrivateKey, "an X25519 private key")

    def journal_key_id(self) -> str:
        return key_id_of_raw(
            raw_public(load_x25519_public_key(self._existing(self.journal_public_path)))
        ).hex()

    def signing_private_key(self) -> Ed25519PrivateKey:
        return load_private_key(self._existing(self.signing_key_path))

    def signing_public_key(self) -> Ed25519PublicKey:
        return load_public_key(self._existing(self.signing_public_path))

    def _existing(self, path: Path) -> Path:
        if not path.exists():
            raise StationError(path, "missing: run 'fieldtriage station init' (or pass --home)")
        return path
