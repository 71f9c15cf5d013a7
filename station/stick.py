"""``fieldtriage station prepare-stick``: make a stick a sync stick, optionally carrying filters and
station-signed trust keys to the kiosks.

Unless told not to, a stick also carries what the analysts decided (station/review.py,
station/share.py): the current exclusion list (reviewed false positives), signed with the station's
signing key and recorded in the database as issued, when the station has a database; and the
newest shared filter of confirmed finds with the station's provider key (signed as a trust key, so
that kiosks take the filter).

The target is the stick's mount folder (or its block device, when mounted). The token is bound to
the filesystem UUID, from ``--uuid``, blkid (device) or findmnt (folder). Nothing written here can
decrypt anything.

The token's ``created`` is this station's clock, signed: a kiosk whose clock is behind it steps its
clock forward to it (agent/daemon/clock_step.py) and never back, so a station clock that is not
synchronised (adjtimex says so) gets a note: a station clock ahead would set every kiosk ahead.

Example::

    >>> import datetime as dt, tempfile, pathlib
    >>> from station.home import StationHome
    >>> home = StationHome(pathlib.Path(tempfile.mkdtemp()) / "station"); home.init()
    >>> stick = pathlib.Path(tempfile.mkdtemp())
    >>> prepared = prepare_stick(home, stick, fs_uuid="1234-ABCD", valid_for=dt.timedelta(days=7))
    >>> prepared.fs_uuid, prepared.token.name
    ('1234-abcd', 'fieldtriage-sync.token')
"""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal.clock import kernel_clock_synchronised
from agent.journal.copying import copy_atomically
from agent.journal.stick_filters import (
    EXCLUSIONS_FOLDER,
    FILTER_FOLDER,
    SIGNATURE_SUFFIX,
    TRUST_FOLDER,
    trust_key_signed_message,
)
from agent.journal.sync import filesystem_uuid
from agent.journal.sync_token import normalised_uuid, write_sync_token
from agent.scan.exclusions import EXCLUSIONS_NAME, ExclusionList, write_exclusions
from filters.container import load_filter
from filters.errors import FieldtriageError, StationError
from filters.keys import MAX_KEY_FILE_BYTES, load_public_key
from filters.safe_files import read_regular_file
from station.home import StationHome
from station.review import issue_exclusion_list
from station.share import provider_key, shared_path
from station.store import Store


@dataclass
class StickPrepared:
    folder: Path
    fs_uuid: str
    token: Path
    expires: dt.datetime
    copied: list[Path] = field(default_factory=list)
    exclusions: ExclusionList | None = None  # the list it carries
    shared: Path | None = None  # the shared filter of confirmed finds it carries
    notes: list[str] = field(default_factory=list)


def prepare_stick(
    home: StationHome,
    target: Path,
    *,
    fs_uuid: str | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=30),
    filters: Sequence[Path] = (),
    trust_keys: Sequence[Path] = (),
    now: dt.datetime | None = None,
    exclusions: bool = True,
    shared: bool = True,
    station_clock: Callable[[], bool | None] = kernel_clock_synchronised,
) -> StickPrepared:
    clock_note: list[str] = []
    if now is None and station_clock() is False:
        clock_note.append(
            "this station's clock is not synchronised (NTP): kiosks behind its time step their clocks "
            "forward to it, and a kiosk never steps back; check the station's time"
        )
    now = now or dt.datetime.now(dt.UTC)
    filters, trust_keys = list(filters), list(trust_keys)
    carried_shared = shared_path(home) if shared and shared_path(home).exists() else None
    if carried_shared is not None:
        filters.append(carried_shared)
        trust_keys.append(provider_key(home)[1])
    signing_key = home.signing_private_key()
    folder, uuid = _stick_folder_and_uuid(target, fs_uuid)
    try:
        token = write_sync_token(folder, uuid, signing_key, now, valid_for)
    except FieldtriageError as err:
        raise StationError(err.subject, err.reason) from err
    prepared = StickPrepared(folder, uuid, token, now + valid_for, notes=clock_note)
    for filter_path in filters:
        load_filter(filter_path, None, check_validity=False)  # a filter file at all (kiosks verify)
        prepared.copied.append(_copy(filter_path, folder / FILTER_FOLDER / filter_path.name))
    for public_path in trust_keys:
        load_public_key(public_path)
        destination = folder / TRUST_FOLDER / public_path.name
        prepared.copied.append(_copy(public_path, destination))
        data = read_regular_file(public_path, MAX_KEY_FILE_BYTES, StationError, "a key file")
        signature_path = destination.with_name(destination.name + SIGNATURE_SUFFIX)
        try:
            signature_path.write_bytes(signing_key.sign(trust_key_signed_message(data)))
        except OSError as err:
            raise StationError(signature_path, f"cannot write: {err.strerror}") from err
        prepared.copied.append(signature_path)
    prepared.shared = carried_shared
    if exclusions and home.database_path.exists():
        store = Store.open(home.database_path, create=False)
        try:
            prepared.exclusions, notes = issue_exclusion_list(store, now_ns=int(now.timestamp() * 1e9))
            prepared.notes.extend(notes)
        finally:
            store.close()
        destination = folder / EXCLUSIONS_FOLDER / EXCLUSIONS_NAME
        try:
            prepared.copied.append(write_exclusions(destination, prepared.exclusions, signing_key))
        except FieldtriageError as err:
            raise StationError(err.subject, err.reason) from err
    return prepared


def _copy(source: Path, destination: Path) -> Path:
    try:
        copy_atomically(source, destination)
    except FieldtriageError as err:
        raise StationError(err.subject, err.reason) from err
    return destination


def _stick_folder_and_uuid(target: Path, fs_uuid: str | None) -> tuple[Path, str]:
    try:
        mode = target.stat().st_mode
    except OSError as err:
        raise StationError(target, f"cannot use as a stick: {err.strerror}") from err
    if stat.S_ISBLK(mode):
        mounted = _run(
            ["findmnt", "--noheadings", "--first-only", "--output", "TARGET", "--source", str(target)], target
        )
        if not mounted:
            raise StationError(target, "not mounted: mount the stick and pass its folder (or the device)")
        folder = Path(mounted)
        uuid = fs_uuid or _run(["blkid", "--match-tag", "UUID", "--output", "value", str(target)], target)
    elif stat.S_ISDIR(mode):
        folder = target
        uuid = fs_uuid or filesystem_uuid(target)
    else:
        raise StationError(target, "neither a folder nor a block device")
    if not normalised_uuid(uuid):
        raise StationError(target, "its filesystem has no UUID: pass --uuid")
    return folder, normalised_uuid(uuid)


def _run(command: list[str], subject: Path) -> str:
    if shutil.which(command[0]) is None:
        raise StationError(subject, f"{command[0]} is not installed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
