"""``fieldtriage station review``: the analyst's verdict on each hit, kept as an audit trail.

Review states (``STATES``):

* ``confirmed``: the analyst looked and it is the known material (it can go into a shared filter,
  ``station share``);
* ``false_positive``: it is not (a benign file in a hash set, a benign file that shares a known
  item's size and sampled blocks). With ``exclude`` it goes to every kiosk on the next sync stick
  as an exclusion, so that the same file never lights red again (agent/scan/exclusions.py);
* ``needs_review``: looked at, not decided (a second opinion, the lab);
* a hit with no review is *not reviewed* (``NOT_REVIEWED``).

**The table.** ``reviews`` in the station database, created here (``ensure_tables``). Rows are only
ever added: triggers refuse any UPDATE or DELETE, so every change stays (who, when, from which state
to which, the note). A hit's state is its newest row. A review never changes the imported records:
it names the hit by kiosk id, scan id and hit index (the hit's place in ``Scan.hits``, which is
the order of the scan record's ``hits``) and keeps a copy of what was reviewed (path, size,
priority, categories, digests), so that it can be checked against the hit and used without the
records. ``exclusion_lists`` keeps every exclusion list a sync stick carried out (its id, when, the
exclusion ids), so that a kiosk's journaled list id says which exclusions it holds.

**For reports** (``station/report.py``), three calls, all read-only, all cheap:

* ``latest_reviews(store) -> dict[(kiosk_id, scan_id, hit_index), Review]``: the current review of
  every reviewed hit; ``scan_id`` and the index are ``Scan.scan_id`` and the index in ``Scan.hits``;
* ``review_history(store, kiosk_id=None, scan_id=None, hit_index=None) -> list[Review]``: every
  review, oldest first;
* ``Review``: ``review_id``, ``kiosk_id``, ``scan_id``, ``hit_index``, ``path``, ``state``,
  ``exclude`` (bool), ``note``, ``analyst``, ``reviewed_ns``, ``hit`` (the copy); ``label`` is the
  state in words ("confirmed", "false positive", "needs review"), ``reviewed`` the time in ISO 8601;
  ``STATE_LABELS`` and ``NOT_REVIEWED`` ("not reviewed") for hits without one.

Example::

    >>> from station.store import Store
    >>> store = Store.open(":memory:")
    >>> latest_reviews(store), review_history(store)
    ({}, [])
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.scan.exclusions import STRONG_KINDS, ExclusionList, exclusion_id_of, make_exclusion_list
from filters.digests import DIGEST_KINDS, DIGEST_SIZES
from filters.errors import FieldtriageError, StationError, UsageError, printable
from station.scans import Scan, iso_ns
from station.store import Store, body_from_json

State = Literal["confirmed", "false_positive", "needs_review"]
STATES: tuple[State, ...] = ("confirmed", "false_positive", "needs_review")
STATE_LABELS: dict[str, str] = {
    "confirmed": "confirmed",
    "false_positive": "false positive",
    "needs_review": "needs review",
}
NOT_REVIEWED = "not reviewed"
MAX_NOTE = 4096
MAX_ANALYST = 128
HitKey = tuple[str, str, int]

TABLES = """
CREATE TABLE IF NOT EXISTS reviews (
    review_id INTEGER PRIMARY KEY AUTOINCREMENT, kiosk_id TEXT NOT NULL, scan_id TEXT NOT NULL,
    hit_index INTEGER NOT NULL, path TEXT NOT NULL, hit TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('confirmed', 'false_positive', 'needs_review')),
    exclude INTEGER NOT NULL CHECK (exclude IN (0, 1)), note TEXT NOT NULL, analyst TEXT NOT NULL,
    reviewed_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS reviews_by_hit ON reviews (kiosk_id, scan_id, hit_index);
CREATE TRIGGER IF NOT EXISTS reviews_never_change BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are an audit trail: never changed'); END;
CREATE TRIGGER IF NOT EXISTS reviews_never_go BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews are an audit trail: never deleted'); END;
CREATE TABLE IF NOT EXISTS exclusion_lists (
    list_id TEXT PRIMARY KEY, issued_ns INTEGER NOT NULL, exclusion_ids TEXT NOT NULL);
"""


def ensure_tables(store: Store) -> None:
    with store.guard():
        store.connection.executescript(TABLES)


@dataclass(frozen=True)
class Review:
    review_id: int
    kiosk_id: str
    scan_id: str
    hit_index: int
    path: str
    state: State
    exclude: bool
    note: str
    analyst: str
    reviewed_ns: int
    hit: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> HitKey:
        return (self.kiosk_id, self.scan_id, self.hit_index)

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def reviewed(self) -> str | None:
        return iso_ns(self.reviewed_ns)

    def digests(self) -> dict[str, bytes]:
        """The reviewed hit's digests (kind -> bytes), those of known kinds and sizes only."""
        return hit_digests(self.hit)

    def to_json(self) -> dict[str, Any]:
        return {
            "review_id": self.review_id,
            "kiosk": self.kiosk_id,
            "scan_id": self.scan_id,
            "hit": self.hit_index,
            "path": self.path,
            "state": self.state,
            "label": self.label,
            "exclude": self.exclude,
            "note": self.note,
            "analyst": self.analyst,
            "reviewed": self.reviewed,
            "digests": {k: v.hex() for k, v in sorted(self.digests().items())},
        }


def hit_digests(hit: dict[str, Any]) -> dict[str, bytes]:
    """A journaled hit's ``digests`` (kind -> hex) as bytes; other kinds and bad values are left out."""
    found: dict[str, bytes] = {}
    raw = hit.get("digests")
    for kind, value in raw.items() if isinstance(raw, dict) else ():
        if kind in DIGEST_KINDS and isinstance(value, str) and len(value) == 2 * DIGEST_SIZES[kind]:
            try:
                found[kind] = bytes.fromhex(value)
            except ValueError:
                continue
    return found


_COLUMNS = "review_id, kiosk_id, scan_id, hit_index, path, state, exclude, note, analyst, reviewed_ns, hit"


def _review(row: tuple[Any, ...]) -> Review:
    review_id, kiosk, scan_id, index, path, state, exclude, note, analyst, reviewed_ns, hit = row
    try:
        copy = json.loads(hit)
    except ValueError:
        copy = {}
    return Review(
        review_id, kiosk, scan_id, index, path, state, bool(exclude), note, analyst, reviewed_ns,
        copy if isinstance(copy, dict) else {},
    )  # fmt: skip


def review_history(
    store: Store, *, kiosk_id: str | None = None, scan_id: str | None = None, hit_index: int | None = None
) -> list[Review]:
    """Every review (of one kiosk, scan or hit when given), oldest first."""
    ensure_tables(store)
    clauses, values = [], []
    for column, value in (("kiosk_id", kiosk_id), ("scan_id", scan_id), ("hit_index", hit_index)):
        if value is not None:
            clauses.append(f"{column} = ?")
            values.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = store.query(f"SELECT {_COLUMNS} FROM reviews{where} ORDER BY review_id", tuple(values))
    return [_review(r) for r in rows]


def latest_reviews(store: Store) -> dict[HitKey, Review]:
    """The current review of every reviewed hit, by (kiosk id, scan id, hit index)."""
    return {r.key: r for r in review_history(store)}


@dataclass(frozen=True)
class HitRef:
    """One hit of an imported scan, as the analyst names it."""

    scan: Scan
    index: int

    @property
    def hit(self) -> dict[str, Any]:
        return self.scan.hits[self.index]

    @property
    def key(self) -> HitKey:
        return (self.scan.kiosk, self.scan.scan_id, self.index)

    @property
    def path(self) -> str:
        return str(self.hit.get("path", ""))

    def name(self) -> str:
        return f"{self.scan.key} hit {self.index}"


def all_hits(scans: Iterable[Scan]) -> list[HitRef]:
    return [HitRef(scan, index) for scan in scans for index in range(len(scan.hits))]


def find_scan(scans: Sequence[Scan], wanted: str) -> Scan:
    """The scan ``wanted`` names: its scan id, or KIOSK_ID:SCAN_ID when ids repeat."""
    matches = [s for s in scans if wanted in (s.scan_id, s.key)]
    if not matches:
        raise StationError(wanted, "no such scan")
    if len(matches) > 1:
        raise StationError(wanted, f"{len(matches)} kiosks have a scan with this id: use KIOSK_ID:SCAN_ID")
    return matches[0]


def find_hit(scans: Sequence[Scan], scan: str, index: int) -> HitRef:
    found = find_scan(scans, scan)
    if not 0 <= index < len(found.hits):
        raise StationError(f"{found.key} hit {index}", f"no such hit (the scan has {len(found.hits)})")
    return HitRef(found, index)


def find_hits_by_path(scans: Sequence[Scan], path: str, digest: str) -> list[HitRef]:
    """The hits whose path is ``path`` and that carry ``digest`` (``KIND:HEX``, or ``HEX`` of any kind)."""
    kind, _, value = digest.rpartition(":")
    value = value.strip().lower()
    if kind and kind not in DIGEST_KINDS:
        raise UsageError("--digest", f"unknown digest kind {kind!r} (choose from {', '.join(DIGEST_KINDS)})")
    try:
        wanted = bytes.fromhex(value)
    except ValueError as err:
        raise UsageError("--digest", "not a hex digest (KIND:HEX or HEX)") from err
    return [
        ref
        for ref in all_hits(scans)
        if ref.path == path
        and any(d == wanted and (not kind or k == kind) for k, d in hit_digests(ref.hit).items())
    ]


def default_analyst() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError) as err:
        raise UsageError("--analyst", "no login name to default to: give the analyst's name") from err


def _checked(option: str, value: str, limit: int, *, required: bool) -> str:
    if "\0" in value or len(value) > limit:
        raise UsageError(option, f"at most {limit} characters, no NUL")
    if required and (not value.strip() or printable(value) != value):
        raise UsageError(option, "must be printable text, not empty")
    return value


def record_review(
    store: Store,
    ref: HitRef,
    state: str,
    *,
    note: str = "",
    analyst: str | None = None,
    exclude: bool = False,
    now_ns: int | None = None,
) -> Review:
    """Add a review of ``ref`` (the records are not touched); the new row."""
    if state not in STATES:
        raise UsageError("--state", f"unknown state {state!r} (choose from {', '.join(STATES)})")
    note = _checked("--note", note, MAX_NOTE, required=False)
    analyst = _checked(
        "--analyst", analyst if analyst is not None else default_analyst(), MAX_ANALYST, required=True
    )
    hit = ref.hit
    if exclude:
        if state != "false_positive":
            raise UsageError("--exclude", "only a false positive can be sent to kiosks as an exclusion")
        try:
            exclusion_id_of(hit_digests(hit))
        except FieldtriageError as err:
            raise StationError(
                ref.name(),
                "the kiosk journaled no SHA-256 or BLAKE3 of this file (it was not read whole): "
                "it cannot be excluded safely",
            ) from err
    copy = {k: hit.get(k) for k in ("path", "size", "priority", "confirmed", "categories")}
    copy["digests"] = {k: v.hex() for k, v in sorted(hit_digests(hit).items())}
    ensure_tables(store)
    with store.transaction() as db:
        cursor = db.execute(
            "INSERT INTO reviews (kiosk_id, scan_id, hit_index, path, hit, state, exclude, note, analyst, "
            "reviewed_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ref.scan.kiosk,
                ref.scan.scan_id,
                ref.index,
                ref.path,
                json.dumps(copy, sort_keys=True),
                state,
                int(exclude),
                note,
                analyst,
                now_ns if now_ns is not None else time.time_ns(),
            ),
        )
        review_id = cursor.lastrowid
    return _review(store.query(f"SELECT {_COLUMNS} FROM reviews WHERE review_id = ?", (review_id,))[0])


def needing_review(store: Store, scans: Sequence[Scan]) -> list[tuple[HitRef, Review | None]]:
    """Hits not reviewed yet or whose current state is ``needs_review``, with their review."""
    latest = latest_reviews(store)
    return [
        (ref, latest.get(ref.key))
        for ref in all_hits(scans)
        if ref.key not in latest or latest[ref.key].state == "needs_review"
    ]


def file_key(digests: dict[str, bytes]) -> tuple[str, bytes] | None:
    """What identifies a file across hits: its SHA-256, else its BLAKE3 (None without either)."""
    kind = next((k for k in STRONG_KINDS if k in digests), None)
    return None if kind is None else (kind, digests[kind])


def strong_digests(digests: dict[str, bytes]) -> set[tuple[str, bytes]]:
    return {(k, digests[k]) for k in STRONG_KINDS if k in digests}


@dataclass
class ExclusionCandidate:
    """One file to exclude, from the current false-positive reviews that named it."""

    exclusion_id: str
    digests: dict[str, bytes]
    reviews: list[Review]

    def to_json(self) -> dict[str, Any]:
        return {
            "exclusion_id": self.exclusion_id,
            "digests": {k: v.hex() for k, v in sorted(self.digests.items())},
            "hits": [f"{r.kiosk_id}:{r.scan_id} hit {r.hit_index}" for r in self.reviews],
            "reviews": [r.review_id for r in self.reviews],
        }


def current_exclusions(store: Store) -> tuple[list[ExclusionCandidate], list[str]]:
    """The exclusions kiosks should carry now, and notes on any left out.

    A hit whose current review is ``false_positive`` with ``exclude`` is one; the same file from
    several hits is one exclusion (by its SHA-256, else its BLAKE3). A file that another hit's
    current review calls ``confirmed`` is left out (detection wins: review them again)."""
    latest = latest_reviews(store).values()
    confirmed = set().union(*(strong_digests(r.digests()) for r in latest if r.state == "confirmed"))
    by_file: dict[tuple[str, bytes], ExclusionCandidate] = {}
    notes: list[str] = []
    for review in latest:
        if review.state != "false_positive" or not review.exclude:
            continue
        digests = review.digests()
        key = file_key(digests)
        if key is None:
            continue  # refused when reviewed; a copy without digests cannot exclude
        if strong_digests(digests) & confirmed:
            notes.append(
                f"{review.kiosk_id}:{review.scan_id} hit {review.hit_index}: the same file is confirmed "
                "in another hit's review: not excluded (review them again)"
            )
            continue
        candidate = by_file.get(key)
        if candidate is None:
            by_file[key] = ExclusionCandidate(exclusion_id_of(digests), dict(digests), [review])
            continue
        if any(candidate.digests.get(k, d) != d for k, d in digests.items()):
            notes.append(f"review {review.review_id}: digests disagree with another review of the file")
            continue
        candidate.digests.update(digests)
        candidate.reviews.append(review)
    return sorted(by_file.values(), key=lambda c: c.exclusion_id), notes


def issue_exclusion_list(store: Store, *, now_ns: int | None = None) -> tuple[ExclusionList, list[str]]:
    """A new list of the current exclusions (for a sync stick), recorded in ``exclusion_lists``;
    issued strictly after every list before it, so that kiosks take it."""
    candidates, notes = current_exclusions(store)
    ensure_tables(store)
    previous = store.query("SELECT MAX(issued_ns) FROM exclusion_lists")[0][0]
    issued = max(now_ns if now_ns is not None else time.time_ns(), (previous or 0) + 1)
    excluded = make_exclusion_list([(c.exclusion_id, c.digests) for c in candidates], issued_ns=issued)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO exclusion_lists VALUES (?, ?, ?)",
            (excluded.list_id, issued, json.dumps([c.exclusion_id for c in candidates])),
        )
    return excluded, notes


def issued_lists(store: Store) -> dict[str, tuple[int, list[str]]]:
    """Every list issued: list id -> (issued_ns, exclusion ids)."""
    ensure_tables(store)
    return {
        list_id: (issued, json.loads(ids))
        for list_id, issued, ids in store.query(
            "SELECT list_id, issued_ns, exclusion_ids FROM exclusion_lists"
        )
    }


def kiosk_exclusion_lists(store: Store) -> dict[str, str | None]:
    """The exclusion list each kiosk said it carries last (its newest ``filters`` record)."""
    out: dict[str, str | None] = {}
    rows = store.query(
        "SELECT kiosk_id, body FROM records WHERE type = 'filters' ORDER BY kiosk_id, segment, idx"
    )
    for kiosk, body in rows:
        try:
            described = body_from_json(body).get("exclusions")
        except ValueError:
            continue
        listed = described.get("list_id") if isinstance(described, dict) else None
        out[kiosk] = listed if isinstance(listed, str) else None
    return out
