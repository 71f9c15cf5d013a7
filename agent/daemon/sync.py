"""Sync sticks in the daemon: recognise one on its read-only mount, then (only then) write to it.

A device is mounted read-only like any other. If a partition holds a sync token that the station
signed for that partition's filesystem UUID and that has not expired, the device is unmounted and
that partition alone is mounted read-write: the kiosk closes its open journal segment, copies every
segment not yet synced, and takes new filters, station-signed trust keys and the station's exclusion
list (reviewed false positives, agent/scan/exclusions.py). A stick with no token,
a forged token, a token for another stick or an expired one is evidence: read-only, scanned.

Before that, ``step_clock`` asks fieldtriage-clock.service to step the kiosk's clock forward to the
token's ``created`` (the station's signed time when it prepared the stick) when the clock is behind
it (agent/daemon/clock_step.py); a step is journaled as a ``clock_step`` record, and every sync
record says what came of it (``clock``).

Example::

    setup = SyncSetup(station_key, journal, paths)
    found, notes = find_sync_partition(mounted, setup.station_key)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config import PathsConfig
from agent.daemon.clock_step import ClockStepper
from agent.devices.mounter import MountedDevice, PartitionMount
from agent.devices.sync_mount import mount_read_write
from agent.journal.sync import export_segments, import_filters_from_stick, verify_sync_token
from agent.journal.sync_token import TOKEN_NAME, SyncToken

log = logging.getLogger(__name__)


@dataclass
class SyncSetup:
    """What a kiosk needs to use sync sticks: the station's signing key and its own folders."""

    station_key: Ed25519PublicKey
    journal: Any  # the journal the daemon writes (rotated before a copy when it can be)
    paths: PathsConfig
    clock: ClockStepper | None = None  # None: fieldtriage-clock.service through paths.runtime/clock


def step_clock(setup: SyncSetup, token: SyncToken) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Step the clock forward to the token's time when it is behind (never raises): the
    ``clock_step`` record when it was stepped, and the sync record's ``clock`` field."""
    try:
        stepper = setup.clock or ClockStepper(setup.paths.runtime / "clock")
        outcome = stepper.step(token.raw)
    except Exception as err:  # the sync goes on whatever happens to the clock
        log.error("clock step failed: %s", err)
        return None, {"outcome": "failed", "line": f"clock not stepped: {err}", "observed_step_ns": None}
    (log.warning if outcome.outcome in ("refused", "failed", "no_answer") else log.info)("%s", outcome.line)
    return outcome.record(), outcome.summary()


def find_sync_partition(
    mounted: MountedDevice, station_key: Ed25519PublicKey, now: dt.datetime | None = None
) -> tuple[tuple[PartitionMount, SyncToken] | None, list[str]]:
    """The partition holding a valid sync token, and notes on any token refused."""
    notes: list[str] = []
    moment = now or dt.datetime.now(dt.UTC)
    for part in mounted.mounted_partitions():
        assert part.mountpoint is not None
        token_path = part.mountpoint / TOKEN_NAME
        if not os.path.lexists(token_path):
            continue
        verdict = verify_sync_token(part.mountpoint, part.probe.uuid, station_key, moment)
        if isinstance(verdict, SyncToken):
            return (part, verdict), notes
        notes.append(
            f"partition {part.partition.number}: sync token refused ({verdict}); scanned as evidence"
        )
    return None, notes


def run_sync(source: str, part: PartitionMount, token: SyncToken, setup: SyncSetup) -> dict[str, Any]:
    """Copy the journal to the stick and take its filters; the journal record of what was done."""
    target = setup.paths.runtime / "sync" / f"{Path(source).name}-p{part.partition.number}"
    rotate = getattr(setup.journal, "rotate", None)
    if callable(rotate):
        rotate()
    with mount_read_write(source, part.partition, part.probe.fs_type, target) as folder:
        copied = export_segments(setup.paths.journal, folder)
        taken = import_filters_from_stick(folder, setup.paths.filters, setup.paths.trust, setup.station_key)
    return {
        "type": "sync",
        "token_id": token.token_id,
        "token_created": token.created,  # the station's clock when it prepared the stick
        "fs_uuid": token.fs_uuid,
        "partition": part.partition.number,
        "segments_copied": [p.name for p in copied],
        "filters_taken": [p.name for p in taken.filters_added],
        "trust_keys_taken": [p.name for p in taken.trust_added],
        "exclusions_taken": taken.exclusions_taken,
        "refused": list(taken.refused),
    }
