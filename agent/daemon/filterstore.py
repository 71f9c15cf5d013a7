"""The filters a kiosk uses: every valid, trusted filter in its filter folder, reloaded on change.

Expired, untrusted or broken filters are skipped with their reason; with none valid the kiosk shows
its fault signal and scans nothing. ``refresh()`` is cheap when nothing changed (names, sizes and
modification times of the folder's files and of the trust folder are compared).

The station's exclusion list (``exclusions.ftx`` in the filter folder, agent/scan/exclusions.py) is
loaded with the filters when the store has the station's signing key; one that does not verify is a
problem and nothing is excluded (more hits, never fewer). ``exclusions`` is the list in use or None.

Example::

    store = FilterStore(Path("/var/lib/fieldtriage/filters"), Path("/var/lib/fieldtriage/trust"))
    store.refresh()
    store.filters, store.problems
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.scan.exclusions import EXCLUSIONS_NAME, ExclusionList, load_exclusions
from filters.container import EXPIRY_WARNING_DAYS, FILTER_SUFFIX, Expiry, expiry_of, load_filter
from filters.errors import FieldtriageError, FilterRefused
from filters.keys import TrustStore
from filters.model import ContrabandFilter

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprint(*folders: Path) -> Fingerprint:
    entries = []
    for folder in folders:
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    entries.append((entry.path, st.st_size, st.st_mtime_ns))
        except OSError:
            entries.append((str(folder), -1, -1))
    return tuple(sorted(entries))


class FilterStore:
    def __init__(
        self,
        filter_folder: Path,
        trust_folder: Path,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        station_key: Ed25519PublicKey | None = None,
        expiry_warning_days: int = EXPIRY_WARNING_DAYS,
    ) -> None:
        self.filter_folder = filter_folder
        self.trust_folder = trust_folder
        self.clock = clock
        self.expiry_warning_days = expiry_warning_days  # agent.toml filters.expiry_warning_days
        self.station_key = station_key
        self.filters: list[ContrabandFilter] = []
        self.exclusions: ExclusionList | None = None
        self.problems: list[str] = []
        self._seen: Fingerprint | None = None
        self._loaded_day: dt.date | None = None
        # loaded filters by (path, size, mtime): unchanged files are not loaded twice (memory)
        self._cache: dict[tuple[str, int, int], ContrabandFilter] = {}
        self._trust_seen: Fingerprint | None = None

    def refresh(self, force: bool = False) -> bool:
        """Reload when the folders changed, a filter in use expired, daily, or on ``force``; True when
        reloaded. Unchanged files are not loaded again (their loaded filter is kept)."""
        seen = _fingerprint(self.filter_folder, self.trust_folder)
        now = self.clock()
        expired = any(f.metadata.validity_problem(now) for f in self.filters)
        if not force and not expired and seen == self._seen and now.date() == self._loaded_day:
            return False
        today = now.date()
        self._seen, self._loaded_day = seen, today
        self.filters, self.problems = self._load()
        self.exclusions = self._load_exclusions()
        for problem in self.problems:
            log.warning("filter skipped: %s", problem)
        log.info("filters in use: %s", ", ".join(f.metadata.name for f in self.filters) or "none")
        return True

    def _load(self) -> tuple[list[ContrabandFilter], list[str]]:
        problems: list[str] = []
        try:
            trust = TrustStore.from_paths([self.trust_folder])
        except FieldtriageError as err:
            return [], [str(err)]
        problems.extend(str(p) for p in trust.problems)
        if not trust.keys:
            problems.append(f"{self.trust_folder}: no trusted provider key")
            return [], problems
        loaded: list[ContrabandFilter] = []
        try:
            candidates = sorted(p for p in self.filter_folder.iterdir() if p.name.endswith(FILTER_SUFFIX))
        except OSError as err:
            return [], [*problems, f"{self.filter_folder}: cannot list: {err.strerror}"]
        trust_seen = _fingerprint(self.trust_folder)
        if trust_seen != self._trust_seen:
            self._cache.clear()  # a key added or removed: every filter is checked again
            self._trust_seen = trust_seen
        now = self.clock()
        cache: dict[tuple[str, int, int], ContrabandFilter] = {}
        for path in candidates:
            try:
                st = path.stat()
                identity = (str(path), st.st_size, st.st_mtime_ns)
                contraband = self._cache.get(identity)
                if contraband is None:
                    contraband = load_filter(path, trust, now=now)
                else:
                    problem = contraband.metadata.validity_problem(now)
                    if problem:
                        raise FilterRefused(path, problem)
                cache[identity] = contraband
                loaded.append(contraband)
            except FieldtriageError as err:
                problems.append(str(err))
            except OSError as err:
                problems.append(f"{path}: cannot read: {err.strerror}")
            except MemoryError:
                problems.append(f"{path}: not enough memory to load it")
        self._cache = cache
        ids = set()
        for contraband in list(loaded):
            if contraband.metadata.filter_id in ids:
                problems.append(f"{contraband.source}: same filter id as another file; used once")
                loaded.remove(contraband)
            ids.add(contraband.metadata.filter_id)
        if not loaded and not candidates:
            problems.append(f"{self.filter_folder}: no filter files (*{FILTER_SUFFIX})")
        return loaded, problems

    def _load_exclusions(self) -> ExclusionList | None:
        path = self.filter_folder / EXCLUSIONS_NAME
        if not os.path.lexists(path):
            return None
        if self.station_key is None:
            self.problems.append(f"{path}: no station signing key configured: no exclusion used")
            return None
        try:
            return load_exclusions(path, self.station_key)
        except FieldtriageError as err:
            self.problems.append(f"{err}; no exclusion used")
            return None

    def describe_exclusions(self) -> dict[str, object] | None:
        """The exclusion list in use (id, issue time, count), as journaled; None without one."""
        return None if self.exclusions is None else self.exclusions.describe()

    def describe(self) -> list[dict[str, object]]:
        """The filters in use, with their expiry: ``expires`` (ISO 8601 UTC, None: never),
        ``expires_in_days`` (whole days left, 0 in the last one) and ``expiring_soon`` (fewer than
        ``expiry_warning_days`` left)."""
        now = self.clock()
        described: list[dict[str, object]] = []
        for f in self.filters:
            expiry = self._expiry(f, now)
            described.append(
                {
                    "id": f.metadata.filter_id,
                    "name": f.metadata.name,
                    "file": f.source,
                    "entries": f.entry_count,
                    "signer": f.signer_key_id,
                    "expires": expiry.date if expiry else None,
                    "expires_in_days": expiry.days_left if expiry else None,
                    "expiring_soon": bool(expiry and expiry.soon),
                }
            )
        return described

    def _expiry(self, contraband: ContrabandFilter, now: dt.datetime) -> Expiry | None:
        return expiry_of(contraband.metadata, now, self.expiry_warning_days)

    def expiry_warnings(self) -> list[str]:
        """One line per filter in use that expires within the warning period (``expiring_soon``):
        ``/var/lib/fieldtriage/filters/a.ftf (lab): expires in 2 days (2026-06-03T00:00:00Z)``."""
        now = self.clock()
        warnings = []
        for f in self.filters:
            expiry = self._expiry(f, now)
            if expiry is not None and expiry.soon:
                warnings.append(f"{f.source} ({f.metadata.name}): {expiry.warning()}")
        return warnings
