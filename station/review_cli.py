"""``fieldtriage station review ...`` and ``fieldtriage station share``: the commands over
station/review.py and station/share.py (``add_commands`` is called by station/cli.py).

* ``review list [--all] [--scan SCAN] [--json]``: hits needing review (not reviewed, or
  ``needs_review``); ``--all``: every hit with its state;
* ``review set SCAN HIT --state STATE [--note TEXT] [--analyst NAME] [--exclude]``, or
  ``review set --path PATH --digest [KIND:]HEX --state ...``: add a review (``--exclude``: a false
  positive to send to kiosks as an exclusion);
* ``review history [SCAN [HIT]] [--json]``: every review, oldest first, with the state before;
* ``review exclusions [--json]``: what the next sync stick will carry, and the list each kiosk
  last said it holds;
* ``share [--name] [--provider] [--description] [--category] [--valid-days N] [-o FILE]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from filters.errors import StationError, UsageError, printable
from station.home import StationHome
from station.kiosks import kiosk_labels
from station.review import (
    NOT_REVIEWED,
    STATES,
    HitRef,
    Review,
    all_hits,
    current_exclusions,
    find_hit,
    find_hits_by_path,
    find_scan,
    hit_digests,
    issued_lists,
    kiosk_exclusion_lists,
    latest_reviews,
    record_review,
    review_history,
)
from station.scans import load_scans
from station.share import share_confirmed
from station.store import Store


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    review = commands.add_parser(
        "review", parents=[common], help="the analyst's review of each hit: confirmed, false positive..."
    )
    below = argparse.ArgumentParser(add_help=False)  # --home after the action too, not reset by it
    below.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="station folder")
    actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[below], help="hits needing review (--all: every hit)")
    listing.add_argument("--all", action="store_true", help="every hit, with its current state")
    listing.add_argument("--scan", help="one scan: scan id, or KIOSK_ID:SCAN_ID")
    listing.add_argument("--json", action="store_true", help="print the hits as JSON")
    listing.set_defaults(handler=cmd_review_list)

    setting = actions.add_parser(
        "set", parents=[below], help="review a hit (a new entry: nothing is overwritten)"
    )
    setting.add_argument("scan", nargs="?", metavar="SCAN", help="scan id, or KIOSK_ID:SCAN_ID")
    setting.add_argument("hit", nargs="?", type=int, metavar="HIT", help="hit index, as 'review list' shows")
    setting.add_argument("--path", help="the hit's path (with --digest, instead of SCAN HIT)")
    setting.add_argument("--digest", metavar="[KIND:]HEX", help="a digest of the hit (with --path)")
    setting.add_argument(
        "--state", required=True, choices=STATES,
        help="confirmed: known material; false_positive: benign; needs_review: look again",
    )  # fmt: skip
    setting.add_argument("--note", default="", help="why (kept with the review)")
    setting.add_argument("--analyst", help="who reviews (default: the login name)")
    setting.add_argument(
        "--exclude",
        action="store_true",
        help="a false positive: send it to kiosks on the next sync stick, so it never lights red again",
    )
    setting.set_defaults(handler=cmd_review_set)

    history = actions.add_parser("history", parents=[below], help="every review, oldest first")
    history.add_argument("scan", nargs="?", metavar="SCAN", help="only this scan (default: every review)")
    history.add_argument("hit", nargs="?", type=int, metavar="HIT", help="only this hit of the scan")
    history.add_argument("--json", action="store_true", help="print the history as JSON")
    history.set_defaults(handler=cmd_review_history)

    excluded = actions.add_parser("exclusions", parents=[below], help="what the next sync stick excludes")
    excluded.add_argument("--json", action="store_true", help="print the exclusions as JSON")
    excluded.set_defaults(handler=cmd_review_exclusions)

    share = commands.add_parser(
        "share", parents=[common], help="a signed filter of the confirmed finds, for other units and partners"
    )
    share.add_argument("--name", default="confirmed finds", help="shown to its users (no case reference)")
    share.add_argument("--provider", default="", help="who provides it, e.g. the unit")
    share.add_argument(
        "--description", default="", help="a line for the filter's metadata (never a case, name or path)"
    )
    share.add_argument("--category", default="confirmed", help="category label of its sets")
    share.add_argument("--valid-days", type=int, default=365, help="expires after (default 365; 0: never)")
    share.add_argument("-o", "--output", type=Path, help="also write a copy here (to give partners)")
    share.set_defaults(handler=cmd_share)


def _store(args: argparse.Namespace) -> Store:
    return Store.open(StationHome(args.home).database_path, create=False)


def _state(review: Review | None) -> str:
    if review is None:
        return NOT_REVIEWED
    return review.label + (" (excluded at kiosks)" if review.exclude else "")


def _hit_line(ref: HitRef, review: Review | None, labels: dict[str, str]) -> str:
    hit = ref.hit
    digests = hit_digests(hit)
    kind = next((k for k in ("sha256", "blake3", "sha1", "md5") if k in digests), None)
    strong = f"{kind} {digests[kind].hex()}" if kind else "no whole-file digest"
    listed = hit.get("categories")
    categories = ", ".join(c for c in listed if isinstance(c, str)) if isinstance(listed, list) else ""
    confirmed = hit.get("confirmed")
    how = "whole-file match" if confirmed is True else "sample only" if confirmed is False else "unconfirmed"
    priority = "; priority" if hit.get("priority") is True else ""
    line = (
        f"{printable(ref.scan.key)} hit {ref.index}: {_state(review)}\n"
        f"    {printable(ref.path)}  ({hit.get('size')} bytes; {printable(categories) or 'no category'}; "
        f"{how}{priority})\n"
        f"    {printable(ref.scan.device_label())} at {labels.get(ref.scan.kiosk, 'a kiosk not enrolled')}"
        f"  {strong}"
    )
    if review is not None:
        note = printable(review.note)
        line += f"\n    last review: {review.reviewed} by {printable(review.analyst)}: {note}"
    return line


def cmd_review_list(args: argparse.Namespace) -> int:
    store = _store(args)
    scans = load_scans(store)
    if args.scan:
        scans = [find_scan(scans, args.scan)]
    latest = latest_reviews(store)
    shown = [
        (ref, latest.get(ref.key))
        for ref in all_hits(scans)
        if args.all or ref.key not in latest or latest[ref.key].state == "needs_review"
    ]
    labels = kiosk_labels(store)
    if args.json:
        print(json.dumps([_hit_json(ref, review, labels) for ref, review in shown], indent=2))
        return 0
    for ref, review in shown:
        print(_hit_line(ref, review, labels))
    total = sum(len(s.hits) for s in scans)
    print(f"{len(shown)} of {total} hits shown" + ("" if args.all else " (needing review; --all: every hit)"))
    return 0


def _hit_json(ref: HitRef, review: Review | None, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "kiosk": ref.scan.kiosk,
        "kiosk_name": labels.get(ref.scan.kiosk, ""),
        "scan_id": ref.scan.scan_id,
        "hit": ref.index,
        "path": ref.path,
        "size": ref.hit.get("size"),
        "digests": {k: v.hex() for k, v in sorted(hit_digests(ref.hit).items())},
        "state": review.state if review else None,
        "review": review.to_json() if review else None,
    }


def cmd_review_set(args: argparse.Namespace) -> int:
    store = _store(args)
    scans = load_scans(store)
    if args.path is not None or args.digest is not None:
        if args.scan is not None or args.path is None or args.digest is None:
            raise UsageError("--path", "give either SCAN HIT, or --path and --digest")
        found = find_hits_by_path(scans, args.path, args.digest)
        if not found:
            raise StationError(args.path, "no hit has this path and digest")
        if len(found) > 1:
            names = ", ".join(ref.name() for ref in found)
            raise StationError(args.path, f"{len(found)} hits have it ({names}): give SCAN HIT")
        ref = found[0]
    elif args.scan is None or args.hit is None:
        raise UsageError("SCAN", "give SCAN HIT, or --path and --digest")
    else:
        ref = find_hit(scans, args.scan, args.hit)
    before = latest_reviews(store).get(ref.key)
    review = record_review(store, ref, args.state, note=args.note, analyst=args.analyst, exclude=args.exclude)
    print(
        f"review {review.review_id}: {printable(ref.name())} {_state(before)} -> {_state(review)} "
        f"by {printable(review.analyst)} at {review.reviewed}"
    )
    if review.exclude:
        print("    the next sync stick ('station prepare-stick') carries it to the kiosks as an exclusion")
    return 0


def cmd_review_history(args: argparse.Namespace) -> int:
    store = _store(args)
    kiosk = scan_id = None
    if args.scan is not None:
        scan = find_scan(load_scans(store), args.scan)
        kiosk, scan_id = scan.kiosk, scan.scan_id
    reviews = review_history(store, kiosk_id=kiosk, scan_id=scan_id, hit_index=args.hit)
    previous: dict[tuple[str, str, int], Review] = {}
    rows = []
    for review in reviews:
        rows.append((review, previous.get(review.key)))
        previous[review.key] = review
    if args.json:
        out = [r.to_json() | {"before": b.state if b else None} for r, b in rows]
        print(json.dumps(out, indent=2))
        return 0
    labels = kiosk_labels(store)
    for review, before in rows:
        print(
            f"#{review.review_id} {review.reviewed} {printable(review.analyst)}: "
            f"{printable(review.kiosk_id)}:{printable(review.scan_id)} hit {review.hit_index} "
            f"({labels.get(review.kiosk_id, 'a kiosk not enrolled')}) "
            f"{_state(before)} -> {_state(review)}\n"
            f"    {printable(review.path)}" + (f"\n    note: {printable(review.note)}" if review.note else "")
        )
    print(f"{len(rows)} reviews")
    return 0


def cmd_review_exclusions(args: argparse.Namespace) -> int:
    store = _store(args)
    candidates, notes = current_exclusions(store)
    lists = issued_lists(store)
    carried = kiosk_exclusion_lists(store)
    if args.json:
        out = {
            "exclusions": [c.to_json() for c in candidates],
            "notes": notes,
            "kiosks": {
                kiosk: {"list_id": list_id, "exclusion_ids": lists.get(list_id or "", (0, []))[1]}
                for kiosk, list_id in carried.items()
            },
        }
        print(json.dumps(out, indent=2))
        return 0
    for candidate in candidates:
        hits = ", ".join(f"{r.kiosk_id}:{r.scan_id} hit {r.hit_index}" for r in candidate.reviews)
        print(f"{candidate.exclusion_id}  {', '.join(sorted(candidate.digests))}  from {printable(hits)}")
    for note in notes:
        print(f"note: {printable(note)}")
    print(f"{len(candidates)} exclusions for the next sync stick")
    labels = kiosk_labels(store)
    for kiosk, list_id in sorted(carried.items()):
        known = lists.get(list_id or "")
        held = f"list {list_id} ({len(known[1])} exclusions)" if known else (list_id or "no list")
        print(f"{labels.get(kiosk, 'kiosk')} ({printable(kiosk)}) carries {printable(held)}")
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    if args.valid_days < 0:
        raise UsageError("--valid-days", "must be 0 (never expires) or more")
    store = _store(args)
    shared = share_confirmed(
        StationHome(args.home),
        store,
        name=args.name,
        provider=args.provider,
        description=args.description,
        category=args.category,
        valid_for=dt.timedelta(days=args.valid_days) if args.valid_days else None,
        output=args.output,
    )
    print(
        f"shared filter {shared.filter_id}: {shared.finds} confirmed finds, kinds {', '.join(shared.kinds)}; "
        f"signed with provider key {shared.provider_key_id}"
    )
    for kind, category, priority, count in shared.sets:
        print(f"    set {kind} {printable(category)} {priority}: {count} entries")
    for note in shared.left_out:
        print(f"note: {printable(note)}")
    print(f"kept for the next sync stick: {printable(str(shared.path))}")
    if shared.copy is not None:
        print(
            f"copy for partners: {printable(str(shared.copy))} "
            f"(they trust the provider key {printable(str(shared.provider_public))})"
        )
    return 0
