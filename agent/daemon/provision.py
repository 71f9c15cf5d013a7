"""First boot of a kiosk: its signing key, and the enrollment file the station registers it from.

``fieldtriage agent provision`` creates the device key where ``paths.device_key`` says (once: an
existing key is kept) and writes ``enrollment.json`` beside it: the kiosk id the station will know
its journal by, the public key, the host name and when, and the kiosk's name and location where
``[kiosk]`` sets them. The engineer takes that file to the station (``fieldtriage station kiosks
add``); a journal from a key the station has not enrolled is refused.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> enrollment = provision_kiosk(folder / "device.key")
    >>> sorted(enrollment), (folder / "enrollment.json").exists()
    (['agent', 'created', 'format', 'hostname', 'kiosk_id', 'public_key'], True)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from agent.journal.copying import fsync_folder
from agent.journal.keys import load_or_create_device_key, raw_public
from agent.journal.segment_format import key_id_of_raw
from filters import __version__
from filters.errors import KeyFileError

ENROLLMENT_NAME = "enrollment.json"
FORMAT = "fieldtriage-kiosk-enrollment-1"


def provision_kiosk(device_key: Path, name: str = "", location: str = "") -> dict[str, Any]:
    """The device key (created if absent) and its enrollment file; returns what the file holds
    (``name`` and ``location``, the configured ``kiosk.name`` and ``kiosk.location``, when set)."""
    key = load_or_create_device_key(device_key)
    public = key.public_key()
    enrollment = {
        "format": FORMAT,
        "kiosk_id": key_id_of_raw(raw_public(public)).hex(),
        "public_key": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii"),
        "hostname": socket.gethostname(),
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "agent": f"fieldtriage {__version__}",
    }
    enrollment |= {key: value for key, value in (("name", name), ("location", location)) if value}
    target = device_key.with_name(ENROLLMENT_NAME)
    temporary = target.with_name(f".{ENROLLMENT_NAME}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as f:
            json.dump(enrollment, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        temporary.replace(target)
        fsync_folder(target.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(target, f"cannot write: {err.strerror}") from err
    return enrollment
