"""``fieldtriage station share``: a signed filter of the confirmed finds, for other units and partners.

The finds are the hits whose current review is ``confirmed`` (station/review.py). The filter is
built by the filter builder (filters/builder.py) from the digests the kiosks journaled for those
hits: their sample digest and whole-file digests (MD5, SHA-1, SHA-256, and BLAKE3 where the kiosk's
filter had it), and signed with the station's **provider key** (``provider.key`` / ``provider.pub``
in the station home, made at the first share; it is not the signing key of sync sticks).

**What it holds, and what it does not.** Like every filter it holds only keyed hashes: each digest
enters as the first 8 bytes of BLAKE3 keyed with the filter's random salt (docs/filter-format.md,
section 3), in a binary fuse table; it answers "is this digest in?" and holds no digest, no path, no
file name, no size, no scan id, kiosk id, kiosk name, analyst or note, no time of a scan, and no
order (the keys are sorted). Its metadata is only what the analyst gives (name, provider,
description: refused when they contain a kiosk id or name, a scan id, an analyst's name, or a path
or file name of a find), a random filter id, the build time, the expiry, the builder's version,
and per set the kind, the category given (default ``confirmed``), the priority class (``priority``
for finds that matched a priority set, else ``other``) and the count of entries.

Kinds: those every find carries (a kind some finds lack is left out, and said so); a find with no
whole-file digest (quick mode: only the sample was read) is left out. With the sample digest among
the kinds, the sets of one class share an item group: kiosks read samples and confirm with the
whole-file sets. A file confirmed in one review and excluded as a false positive in another is left
out.

The newest shared filter is kept in the station home (``shared/confirmed-finds.ftf``); the next
sync stick carries it to every kiosk of the unit with the provider key (signed by the station, so
kiosks trust it); ``--output`` writes a copy to give partners with ``provider.pub``.

Example::

    >>> import tempfile, pathlib
    >>> from station.home import StationHome
    >>> home = StationHome(pathlib.Path(tempfile.mkdtemp()) / "station"); home.init()
    >>> key, public = provider_key(home)
    >>> key.name, public.name
    ('provider.key', 'provider.pub')
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import DIGEST_KINDS, SAMPLE_KIND, WHOLE_FILE_KINDS
from filters.errors import FieldtriageError, StationError, UsageError
from filters.importers import DigestEntry, Priority
from filters.keys import generate_key_pair, key_id, load_private_key
from station.home import StationHome
from station.review import Review, file_key, latest_reviews, strong_digests
from station.store import Store

PROVIDER_PREFIX = "provider"
SHARED_FOLDER = "shared"
SHARED_NAME = "confirmed-finds.ftf"
DEFAULT_CATEGORY = "confirmed"
MIN_TERM = 4  # shorter names and path parts are not looked for in the metadata (too common)


def provider_key(home: StationHome) -> tuple[Path, Path]:
    """The station's provider key pair (PEM, filters/keys.py conventions), made when absent."""
    private_path = home.folder / f"{PROVIDER_PREFIX}.key"
    public_path = home.folder / f"{PROVIDER_PREFIX}.pub"
    if not private_path.exists():
        if not home.signing_key_path.exists():
            raise StationError(
                home.signing_key_path, "missing: run 'fieldtriage station init' (or pass --home)"
            )
        generate_key_pair(home.folder / PROVIDER_PREFIX)
    return private_path, public_path


def shared_path(home: StationHome) -> Path:
    return home.folder / SHARED_FOLDER / SHARED_NAME


@dataclass
class Shared:
    path: Path
    filter_id: str
    provider_key_id: str
    provider_public: Path
    finds: int
    kinds: tuple[str, ...]
    sets: list[tuple[str, str, str, int]]  # kind, category, priority, entries
    left_out: list[str] = field(default_factory=list)
    copy: Path | None = None


def confirmed_finds(store: Store) -> tuple[list[Review], list[str]]:
    """One review per confirmed file (by SHA-256, else BLAKE3, else all its digests), and notes on
    the finds left out."""
    latest = list(latest_reviews(store).values())
    excluded = set().union(
        *(strong_digests(r.digests()) for r in latest if r.state == "false_positive" and r.exclude)
    )
    notes: list[str] = []
    finds: dict[object, Review] = {}
    for review in latest:
        if review.state != "confirmed":
            continue
        digests = review.digests()
        name = f"{review.kiosk_id}:{review.scan_id} hit {review.hit_index}"
        if not set(digests) & set(WHOLE_FILE_KINDS):
            notes.append(f"{name}: no whole-file digest journaled (only its sample was read): left out")
            continue
        if strong_digests(digests) & excluded:
            notes.append(f"{name}: the same file is excluded as a false positive: left out (review again)")
            continue
        finds.setdefault(file_key(digests) or tuple(sorted(digests.items())), review)
    return list(finds.values()), notes


def share_confirmed(
    home: StationHome,
    store: Store,
    *,
    name: str = "confirmed finds",
    provider: str = "",
    description: str = "",
    category: str = DEFAULT_CATEGORY,
    valid_for: dt.timedelta | None = dt.timedelta(days=365),
    output: Path | None = None,
    now: dt.datetime | None = None,
) -> Shared:
    """Build, sign and keep the shared filter (and copy it to ``output``); StationError when no
    confirmed find can go in."""
    now = now or dt.datetime.now(dt.UTC)
    finds, notes = confirmed_finds(store)
    if not finds:
        raise StationError(
            "station share", "no confirmed find to share: review hits first ('station review')"
        )
    _check_metadata(store, {"--name": name, "--provider": provider, "--description": description})
    kinds = set(DIGEST_KINDS)
    for review in finds:
        kinds &= set(review.digests())
    for kind in DIGEST_KINDS:
        lacking = sum(kind not in r.digests() for r in finds)
        if 0 < lacking < len(finds):
            notes.append(f"{kind}: {lacking} of {len(finds)} finds have none journaled: not in the filter")
    if not kinds & set(WHOLE_FILE_KINDS):
        raise StationError("station share", "the confirmed finds have no whole-file digest kind in common")
    builder = FilterBuilder(
        name=name,
        provider=provider,
        description=description,
        expires=None if valid_for is None else int((now + valid_for).timestamp()),
    )
    together = SAMPLE_KIND in kinds  # same items in every set of a class: an item group
    for review in finds:
        digests = review.digests()
        priority: Priority = "priority" if review.hit.get("priority") is True else "other"
        for kind in sorted(kinds):
            builder.add(DigestEntry(kind, digests[kind], category, priority, from_content=together))
    try:
        contraband = builder.build_unsigned()
    except FieldtriageError as err:
        raise StationError(err.subject, err.reason) from err
    private_path, public_path = provider_key(home)
    signing_key = load_private_key(private_path)
    target = shared_path(home)
    try:
        target.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError as err:
        raise StationError(target.parent, f"cannot create: {err.strerror}") from err
    write_filter(target, contraband, signing_key)
    shared = Shared(
        target,
        contraband.metadata.filter_id,
        key_id(signing_key.public_key()),
        public_path,
        len(finds),
        tuple(k for k in DIGEST_KINDS if k in kinds),
        [(s.kind, s.category, s.priority, s.count) for s in contraband.sets],
        notes,
    )
    if output is not None:
        try:
            shutil.copyfile(target, output)
        except OSError as err:
            raise StationError(output, f"cannot write: {err.strerror}") from err
        shared.copy = output
    return shared


def _check_metadata(store: Store, fields: dict[str, str]) -> None:
    """Refuse metadata that names what the filter must not link back to."""
    terms: set[str] = set()
    for review in latest_reviews(store).values():
        path = PurePosixPath(review.path)
        terms.update({review.kiosk_id, review.scan_id, review.analyst, review.path, path.name, path.stem})
    try:
        names = store.query("SELECT name FROM kiosks")
    except FieldtriageError:
        names = []  # a station before enrollment: no kiosk names
    terms.update(str(n) for (n,) in names if n)
    terms.update(k for k in store.kiosk_ids())
    wanted = sorted((t for t in terms if len(t.strip()) >= MIN_TERM), key=len, reverse=True)
    for option, value in fields.items():
        folded = value.casefold()
        for term in wanted:
            if term.casefold() in folded:
                raise UsageError(
                    option,
                    f"names {term!r} (a kiosk, scan, analyst or a find's path): a shared filter must "
                    "not link back to the material or the case",
                )
