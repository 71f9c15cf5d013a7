"""``fieldtriage filter``: keygen, build, inspect, verify, lookup."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from filters.blocks import BlockCutter, read_common_digests
from filters.builder import FilterBuilder
from filters.container import EXPIRY_WARNING_DAYS, SECONDS_PER_DAY, expiry_of, load_filter, write_filter
from filters.digests import BLOCK_KIND, DIGEST_KINDS, DIGEST_SIZES, digest_path
from filters.errors import FilterRefused, ImportFailed, UsageError, printable
from filters.importers import FORMATS, ImportOptions, ImportReport
from filters.importers.detect import parse_input_spec, read_input
from filters.keys import TrustStore, generate_key_pair, key_id, load_private_key
from filters.model import ContrabandFilter, derive_key, iso_time

LOOKUP_BATCH = 100_000
BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_WARN_DAYS = 3650


EXAMPLES = """examples:
  fieldtriage filter keygen lab                       # lab.key (keep offline) and lab.pub
  fieldtriage filter build -o unit.ftf --key lab.key --name "unit 2026-12" --expires 2027-03-31 known/
  fieldtriage filter build -o vic.ftf --key lab.key --name vics vics:case.json
  fieldtriage filter verify unit.ftf --trust lab.pub  # exit 0: valid and trusted
  fieldtriage filter inspect unit.ftf --trust lab.pub
  fieldtriage filter lookup unit.ftf --trust lab.pub --file suspect.jpg
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "filter",
        help="build, sign, inspect, verify and query filters",
        description="Contraband filters: signed, compact, one-way sets of known-material digests.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="filter_command", required=True, metavar="COMMAND")

    keygen = commands.add_parser("keygen", help="make a provider signing key pair")
    keygen.add_argument("prefix", metavar="PREFIX", help="writes PREFIX.key (0600) and PREFIX.pub")
    keygen.set_defaults(handler=cmd_keygen)

    build = commands.add_parser("build", help="build and sign a filter from hash sets or folders")
    build.add_argument("inputs", nargs="+", metavar="INPUT", help="file or folder, optionally FORMAT:PATH")
    build.add_argument("-o", "--output", required=True, type=Path, help="the filter file to write (.ftf)")
    build.add_argument("--key", required=True, type=Path, help="provider private key (PREFIX.key)")
    build.add_argument("--name", required=True, help="the filter's name, shown on kiosks and in reports")
    build.add_argument("--provider", default="", help="who built it (unit or agency), shown with the name")
    build.add_argument("--description", default="", help="a free-text line kept in the filter's metadata")
    build.add_argument(
        "--expires",
        type=parse_expires,
        help="last day YYYY-MM-DD (valid to the end of that day, UTC) or an ISO 8601 time "
        "(UTC if no zone); must be in the future",
    )
    build.add_argument(
        "--not-before", type=parse_date, metavar="DATE",
        help="not valid before this day (YYYY-MM-DD: its start, UTC) or ISO 8601 time",
    )  # fmt: skip
    build.add_argument("--format", choices=FORMATS, help="format of every input (default: detect)")
    build.add_argument(
        "--digests",
        default="sample,blake3",
        help="kinds computed for folder inputs; 'block' adds a block set of every file's 4 KiB blocks",
    )
    build.add_argument(
        "--block-subsample", type=int, default=1, metavar="K",
        help="keep 1 in K blocks of each file in block sets (default 1: every probative block)",
    )  # fmt: skip
    build.add_argument(
        "--common-blocks", action="append", default=[], type=Path, metavar="DIR",
        help="a folder of ordinary files whose 4 KiB blocks are left out of block sets (repeatable)",
    )  # fmt: skip
    build.add_argument("--category", default="known", help="category label for folder, list, hashdeep")
    build.add_argument(
        "--priority-class", choices=("priority", "other"), default="priority",
        help="class of folder, list and hashdeep entries: priority lights red, other blinks red",
    )  # fmt: skip
    build.add_argument("--list-kind", choices=DIGEST_KINDS, help="digest kind of plain lists")
    build.add_argument("--priority-categories", default="1,2", help="VICS categories that are priority")
    build.add_argument("--other-categories", default="3", help="VICS categories kept as 'other'")
    build.add_argument("--strict", action="store_true", help="stop at the first bad record")
    build.set_defaults(handler=cmd_build)

    inspect = commands.add_parser("inspect", help="show a filter's metadata and sets")
    inspect.add_argument("filter", type=Path, help="the filter file (.ftf)")
    inspect.add_argument("--json", action="store_true", help="print the metadata and sets as JSON")
    inspect.add_argument(
        "--trust",
        action="append",
        default=None,
        metavar="PUB_OR_DIR",
        help="public key file or folder of them (repeatable)",
    )
    inspect.set_defaults(handler=cmd_inspect)

    verify = commands.add_parser("verify", help="exit 0 when a filter is valid and trusted")
    verify.add_argument("filter", type=Path, help="the filter file (.ftf)")
    verify.add_argument(
        "--trust",
        action="append",
        required=True,
        metavar="PUB_OR_DIR",
        help="public key file or folder of them (repeatable)",
    )
    verify.add_argument(
        "--warn-days",
        type=parse_warn_days,
        default=EXPIRY_WARNING_DAYS,
        metavar="DAYS",
        help=f"warn when the filter expires within DAYS days (default {EXPIRY_WARNING_DAYS}; 0: never)",
    )
    verify.set_defaults(handler=cmd_verify)

    lookup = commands.add_parser("lookup", help="look files or digests up (exit 0 hit, 1 none, 2 error)")
    lookup.add_argument("filter", type=Path, help="the filter file (.ftf)")
    lookup.add_argument(
        "--trust",
        action="append",
        required=True,
        metavar="PUB_OR_DIR",
        help="public key file or folder of them (repeatable)",
    )
    lookup.add_argument(
        "--file", action="append", default=[], type=Path, help="a file to digest and look up (repeatable)"
    )
    lookup.add_argument(
        "--digest", action="append", default=[], metavar="KIND:HEX",
        help="a digest to look up, e.g. md5:9e107d9d372bb6826bd81d3542a419d6 (repeatable)",
    )  # fmt: skip
    lookup.add_argument(
        "--digests-from", action="append", default=[], metavar="FILE_OR_DASH",
        help="a file of KIND:HEX lines ('-': standard input) to look up",
    )  # fmt: skip
    lookup.set_defaults(handler=cmd_lookup)


def parse_date(text: str) -> int:
    """Unix seconds of an ISO 8601 time (UTC if no zone); a bare date YYYY-MM-DD is that day's start."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def parse_expires(text: str) -> int:
    """``parse_date``, but a bare date YYYY-MM-DD is the last day of validity: the filter expires at
    the next midnight UTC (``--expires 2026-06-30``: valid to the end of 30 June, stored as
    2026-07-01T00:00:00Z, since a filter is not valid at or after ``expires``)."""
    seconds = parse_date(text)
    return seconds + SECONDS_PER_DAY if BARE_DATE.fullmatch(text.strip()) else seconds


def parse_warn_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from err
    if not 0 <= days <= MAX_WARN_DAYS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_WARN_DAYS} days, not {days}")
    return days


def check_dates(not_before: int | None, expires: int | None, now: float) -> None:
    """Refuse a filter that could never be used: an expiry already past, or not after --not-before."""
    if expires is None:
        return
    if expires <= now:
        given = iso_time(expires)
        if expires % SECONDS_PER_DAY == 0:  # midnight: what a bare date gives
            last = dt.datetime.fromtimestamp(expires - SECONDS_PER_DAY, dt.UTC).date()
            given = f"the end of {last.isoformat()} UTC ({given})"
        raise UsageError(
            "--expires", f"{given} is already past; now is {iso_time(int(now))}: give a later date"
        )
    if not_before is not None and not_before >= expires:
        raise UsageError("--expires", f"{iso_time(expires)} is not after --not-before {iso_time(not_before)}")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_keygen(args: argparse.Namespace) -> int:
    private_path, public_path = generate_key_pair(args.prefix)
    identifier = key_id(load_private_key(private_path).public_key())
    print(
        f"private key {private_path} (keep it offline)\npublic key  {public_path}\nkey id      {identifier}"
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    check_dates(args.not_before, args.expires, time.time())
    try:
        digests = tuple(_csv(args.digests))
        options = ImportOptions(
            category=args.category,
            priority=args.priority_class,
            digests=digests,
            list_kind=args.list_kind,
            vics_priority_categories=frozenset(_csv(args.priority_categories)),
            vics_other_categories=frozenset(_csv(args.other_categories)),
            strict=args.strict,
        )
    except ValueError as err:
        raise UsageError("--digests", str(err)) from err
    if unknown := [d for d in digests if d not in (*DIGEST_KINDS, BLOCK_KIND)]:
        raise UsageError("--digests", f"unknown digest kind {unknown[0]!r}")
    if args.common_blocks and BLOCK_KIND not in digests:
        raise UsageError("--common-blocks", "only block sets use it: add 'block' to --digests")
    if not 1 <= args.block_subsample <= 65536:
        raise UsageError("--block-subsample", f"must be 1 to 65536, not {args.block_subsample}")
    signing_key = load_private_key(args.key)
    report = ImportReport(strict=args.strict)
    builder = FilterBuilder(
        name=args.name,
        provider=args.provider,
        description=args.description,
        not_before=args.not_before,
        expires=args.expires,
        block_subsample=args.block_subsample,
    )
    for folder in args.common_blocks:
        for file_digests in read_common_digests(folder):
            builder.add_common_blocks(file_digests)
    paths = []
    for spec in args.inputs:
        prefix, path = parse_input_spec(spec)
        paths.append(path)
        builder.add_all(read_input(path, prefix or args.format, options, report))
    if not builder.summary():
        raise ImportFailed(", ".join(paths), f"no digests to build a filter from{_why_none(report)}")
    contraband = builder.build_unsigned()
    write_filter(args.output, contraband, signing_key)
    size = args.output.stat().st_size
    _print_build_report(report, contraband, args.output, size, time.monotonic() - started, builder)
    return 0


def _why_none(report: ImportReport) -> str:
    """`` (left out: 3 zero-length file; 2 bad records)``: what the inputs held instead of digests."""
    parts = [f"{count} {reason}" for reason, count in sorted(report.left_out.items())]
    held = "; ".join(
        ([f"left out: {', '.join(parts)}"] if parts else [])
        + ([f"{report.bad_count} bad records"] if report.bad_count else [])
    )
    return f" ({held})" if held else ""


def _print_build_report(
    report: ImportReport,
    contraband: ContrabandFilter,
    output: Path,
    size: int,
    seconds: float,
    builder: FilterBuilder,
) -> None:
    print("inputs:")
    for source, count in sorted(report.records.items()):
        print(f"  {printable(source)}: {count} digests")
    if report.left_out:
        print("left out:")
        for reason, count in sorted(report.left_out.items()):
            print(f"  {count} {reason}")
    if report.bad_count:
        print(f"bad records: {report.bad_count} (skipped; --strict makes them fatal)")
        for bad in report.bad_records[:20]:
            print(f"  {printable(str(bad))}")
        if report.bad_count > 20:
            print(f"  ... and {report.bad_count - 20} more")
    if builder.block_stats is not None:
        b = builder.block_stats
        print(
            f"blocks: {b.blocks} whole 4 KiB blocks of {b.items} files ({b.copies} exact copies merged); "
            f"left out: {b.pattern} repeated byte or short pattern, {b.shared} in more than one item, "
            f"{b.common} in the common blocks ({b.common_corpus_blocks} distinct), "
            f"{b.not_sampled} by 1-in-{builder.blocks.subsample} subsampling; kept {b.kept}"
        )
    print("sets:")
    for s in contraband.sets:
        group = f", item group {s.item_group}" if s.item_group is not None else ""
        block = ""
        if s.block is not None:
            block = f", 1 in {s.block.subsample} blocks, {s.block.dense_items} of {s.block.items} items dense"
        print(f"  {s.index}: {s.kind:7} {s.category} ({s.priority}): {s.count} entries{group}{block}")
    entries = max(contraband.entry_count, 1)
    print(
        f"wrote {output}: {size} bytes, {size / entries:.2f} bytes per entry, "
        f"id {contraband.metadata.filter_id}, in {seconds:.1f} s"
    )


def describe(contraband: ContrabandFilter, signature: str) -> dict[str, Any]:
    meta = contraband.metadata
    return {
        "file": contraband.source,
        "size": contraband.size,
        "id": meta.filter_id,
        "name": meta.name,
        "provider": meta.provider,
        "description": meta.description,
        "created": iso_time(meta.created),
        "not_before": iso_time(meta.not_before) if meta.not_before is not None else None,
        "expires": iso_time(meta.expires) if meta.expires is not None else None,
        "format_version": meta.format_version,
        "builder": meta.builder,
        "signer_key_id": contraband.signer_key_id,
        "signature": signature,
        "entries": contraband.entry_count,
        "sets": [
            {
                "index": s.index,
                "kind": s.kind,
                "category": s.category,
                "priority": s.priority,
                "count": s.count,
                "item_group": s.item_group,
                "bytes": int(s.fuse.fingerprints.nbytes),
                **(
                    {}
                    if s.block is None
                    else {
                        "subsample": s.block.subsample,
                        "items": s.block.items,
                        "dense_items": s.block.dense_items,
                    }
                ),
            }
            for s in contraband.sets
        ],
        "sample_covers": {str(k): v for k, v in contraband.sample_cover().items()},
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.trust:
        contraband = load_filter(args.filter, TrustStore.from_paths(args.trust), check_validity=False)
        signature = "valid, signer trusted"
    else:
        contraband = load_filter(args.filter, None, check_validity=False)
        signature = "not checked (give --trust)"
    info = describe(contraband, signature)
    problem = contraband.metadata.validity_problem(dt.datetime.now(dt.UTC))
    info["validity"] = problem or "valid now"
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for name in ("file", "size", "id", "name", "provider", "description", "created", "not_before"):
        print(f"{name:15} {printable(str(info[name]))}")
    for name in ("expires", "validity", "format_version", "builder", "signer_key_id", "signature"):
        print(f"{name:15} {printable(str(info[name]))}")
    print(f"{'entries':15} {info['entries']}")
    for s in info["sets"]:
        group = f" item group {s['item_group']}" if s["item_group"] is not None else ""
        print(f"set {s['index']:<11} {s['kind']:7} {s['category']} ({s['priority']}) ", end="")
        block = ""
        if "subsample" in s:
            block = f", 1 in {s['subsample']} blocks, {s['dense_items']} of {s['items']} items dense"
        print(f"{s['count']} entries{group}{block}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    trust = TrustStore.from_paths(args.trust)
    try:
        contraband = load_filter(args.filter, trust)
    except FilterRefused as err:
        print(f"refused: {err}")
        return 1
    expiry = expiry_of(contraband.metadata, dt.datetime.now(dt.UTC), args.warn_days)
    until = f"expires {expiry.date}" if expiry is not None else "never expires"
    print(f"valid: {args.filter} ({contraband.metadata.name}, {contraband.entry_count} entries, "
          f"signer {contraband.signer_key_id}, {until})")  # fmt: skip
    if expiry is not None and expiry.soon:
        print(f"warning: {args.filter} {expiry.warning()}: deliver a newer filter before then")
    return 0


def parse_digest_query(text: str) -> tuple[str, bytes]:
    kind, sep, hex_digest = text.strip().partition(":")
    kind = kind.lower()
    if not sep or kind not in DIGEST_SIZES:
        raise ValueError(f"expected KIND:HEX with KIND one of {', '.join(DIGEST_KINDS)}")
    try:
        digest = bytes.fromhex(hex_digest)
    except ValueError as err:
        raise ValueError(f"{hex_digest[:80]!r} is not hex") from err
    if len(digest) != DIGEST_SIZES[kind]:
        raise ValueError(f"a {kind} digest has {DIGEST_SIZES[kind] * 2} hex digits, not {len(hex_digest)}")
    return kind, digest


def _result_line(
    query: str, contraband: ContrabandFilter, hits: list[int], blocks: dict[str, Any] | None = None
) -> str:
    sets = [contraband.sets[i] for i in hits]
    line: dict[str, Any] = {
        "query": query,
        "matched": bool(sets),
        "priority": any(s.priority == "priority" for s in sets),
        "sets": [
            {"set": s.index, "kind": s.kind, "category": s.category, "priority": s.priority} for s in sets
        ],
    }
    if blocks is not None:
        line["blocks"] = blocks
    return json.dumps(line)


def _file_blocks(path: Path, contraband: ContrabandFilter) -> dict[str, Any] | None:
    """How many of a file's whole 4 KiB blocks each block set holds (None: the filter has none)."""
    if not contraband.block_sets:
        return None
    cutter = BlockCutter()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            cutter.feed(chunk)
    found = contraband.lookup_many(BLOCK_KIND, cutter.digests)
    return {
        "whole_blocks": len(cutter.digests),
        "sets": [{"set": s.index, "found": len(indices)} for s, indices in found],
    }


def cmd_lookup(args: argparse.Namespace) -> int:
    if not (args.file or args.digest or args.digests_from):
        raise UsageError("lookup", "give --file, --digest or --digests-from")
    contraband = load_filter(args.filter, TrustStore.from_paths(args.trust))
    matched = errors = 0
    out = sys.stdout
    for path in args.file:
        try:
            digests = digest_path(path, contraband.kinds) if path.stat().st_size else {}
            blocks = _file_blocks(path, contraband)
        except OSError as err:
            print(f"fieldtriage: {printable(str(path))}: {err.strerror or err}", file=sys.stderr)
            errors += 1
            continue
        hits = [m.filter_set.index for m in contraband.lookup(digests)]
        matched += bool(hits)
        out.write(_result_line(f"file:{path}", contraband, hits, blocks) + "\n")
    for text in args.digest:
        try:
            kind, digest = parse_digest_query(text)
        except ValueError as err:
            raise UsageError(f"--digest {text}", str(err)) from err
        hits = [s.index for s in contraband.lookup_digest(kind, digest)]
        matched += bool(hits)
        out.write(_result_line(f"{kind}:{digest.hex()}", contraband, hits) + "\n")
    for source in args.digests_from:
        m, e = _lookup_stream(contraband, source, out)
        matched += m
        errors += e
    if errors:
        return 2
    return 0 if matched else 1


def _open_queries(source: str) -> TextIO:
    if source == "-":
        return sys.stdin
    try:
        return open(source, encoding="utf-8", errors="replace")
    except OSError as err:
        raise UsageError(source, f"cannot read: {err.strerror}") from err


def _lookup_stream(contraband: ContrabandFilter, source: str, out: TextIO) -> tuple[int, int]:
    """Look up KIND:HEX lines in batches, vectorised per set; one JSON line per query in order."""
    matched = errors = 0
    stream = _open_queries(source)
    try:
        for batch in _batches(stream):
            queries: list[tuple[str, int]] = []
            for number, line in batch:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    kind, digest = parse_digest_query(line)
                except ValueError as err:
                    print(f"fieldtriage: {printable(source)}: line {number}: {err}", file=sys.stderr)
                    errors += 1
                    continue
                queries.append((f"{kind}:{digest.hex()}", derive_key(contraband.salt, kind, digest)))
            hits = _batch_hits(contraband, queries)
            for (text, _), found in zip(queries, hits, strict=True):
                matched += bool(found)
                out.write(_result_line(text, contraband, found) + "\n")
    finally:
        if stream is not sys.stdin:
            stream.close()
    return matched, errors


def _batches(stream: TextIO) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for number, line in enumerate(stream, 1):
        batch.append((number, line))
        if len(batch) == LOOKUP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _batch_hits(contraband: ContrabandFilter, queries: list[tuple[str, int]]) -> list[list[int]]:
    hits: list[list[int]] = [[] for _ in queries]
    for kind in contraband.kinds:
        positions = [i for i, (text, _) in enumerate(queries) if text.startswith(kind + ":")]
        if not positions:
            continue
        keys = np.array([queries[i][1] for i in positions], dtype=np.uint64)
        for filter_set in contraband.sets_of_kind(kind):
            found = filter_set.fuse.contains_many(keys)
            for position in np.flatnonzero(found):
                hits[positions[int(position)]].append(filter_set.index)
    for found_sets in hits:
        found_sets.sort()
    return hits
