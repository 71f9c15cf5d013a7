"""``fieldtriage station ...``: the unit workstation's commands.

init (keys), import (verify, decrypt, store), report (HTML/CSV/JSON), export-vics (Project VIC case
file), kiosks (which exist, last sync, filters), prepare-stick (sync token, filters, trust keys).
``import`` exits 1 when it found an alarm or warning, 0 when all was well.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from filters.cli import parse_date
from filters.errors import StationError, UsageError, printable
from filters.keys import key_id
from station.findings import SEVERITY_ORDER
from station.home import StationHome
from station.importer import import_sources
from station.kiosks import kiosk_overview
from station.report import csv_report, json_report, report_reviews, write_html_report
from station.review_cli import add_commands as add_review_commands
from station.scans import Scan, filter_label, load_scans
from station.stick import prepare_stick
from station.store import Store
from station.vics import vics_case


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        type=Path,
        help="station folder (default $FIELDTRIAGE_STATION_HOME or ~/.fieldtriage-station)",
    )
    parser = subparsers.add_parser("station", help="the unit workstation: keys, journal import, reports")
    commands = parser.add_subparsers(dest="station_command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", parents=[common], help="create the station's keys")
    init.set_defaults(handler=cmd_init)

    importing = commands.add_parser("import", parents=[common], help="verify, decrypt and store journals")
    importing.add_argument("sources", nargs="+", type=Path, metavar="SOURCE", help="segment file or folder")
    importing.set_defaults(handler=cmd_import)

    report = commands.add_parser("report", parents=[common], help="scans as HTML, CSV or JSON")
    report.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report.add_argument("-o", "--output", type=Path, help="folder (html) or file (csv, json; default stdout)")
    report.add_argument("--since", type=parse_date, help="scans started at or after (YYYY-MM-DD or ISO 8601)")
    report.add_argument("--device", help="only devices whose vendor, model or serial contains this")
    report.add_argument("--kiosk", help="only kiosks whose id starts with this")
    report.set_defaults(handler=cmd_report)

    vics = commands.add_parser("export-vics", parents=[common], help="a scan's hits as a VICS 2.0 case file")
    vics.add_argument("scan", metavar="SCAN", help="scan id, or KIOSK_ID:SCAN_ID when ids repeat")
    vics.add_argument("--case-number")
    vics.add_argument("-o", "--output", type=Path, help="file (default stdout)")
    vics.set_defaults(handler=cmd_export_vics)

    kiosks = commands.add_parser("kiosks", parents=[common], help="known kiosks, last sync, filters carried")
    kiosks.add_argument("--json", action="store_true")
    kiosks.set_defaults(handler=cmd_kiosks)

    stick = commands.add_parser("prepare-stick", parents=[common], help="make a stick a sync stick")
    stick.add_argument("target", type=Path, metavar="DEVICE_OR_FOLDER", help="mounted stick folder or device")
    stick.add_argument("--uuid", help="filesystem UUID (default: from blkid or findmnt)")
    stick.add_argument("--valid-days", type=int, default=30, help="token lifetime (default 30)")
    stick.add_argument(
        "--filter", action="append", default=[], type=Path, help="filter to carry (repeatable)"
    )
    stick.add_argument(
        "--trust-key",
        action="append",
        default=[],
        type=Path,
        help="provider public key to sign and carry (repeatable)",
    )
    stick.add_argument("--no-exclusions", action="store_true", help="no exclusion list ('station review')")
    stick.add_argument("--no-shared", action="store_true", help="not the shared filter ('station share')")
    stick.set_defaults(handler=cmd_prepare_stick)
    add_review_commands(commands, common)  # review, share: station/review_cli.py


def cmd_init(args: argparse.Namespace) -> int:
    home = StationHome(args.home)
    home.init()
    print(f"station initialised in {printable(str(home.folder))}")
    print(f"\njournal key (install on kiosks as the station journal key), id {home.journal_key_id()}:")
    print(f"  {printable(str(home.journal_public_path))}")
    print(home.journal_public_path.read_text(encoding="ascii"), end="")
    print(
        f"\nsigning key (kiosks verify sync tokens and trust keys with it), id "
        f"{key_id(home.signing_public_key())}:"
    )
    print(f"  {printable(str(home.signing_public_path))}")
    print(home.signing_public_path.read_text(encoding="ascii"), end="")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    summary = import_sources(StationHome(args.home), args.sources)
    for finding in sorted(
        summary.new_findings,
        key=lambda f: (SEVERITY_ORDER[f.severity], f.kiosk or "", f.segment or 0, f.record or 0),
    ):
        print(finding.line())
    serious = [f for f in summary.findings if f.severity != "notice"]
    known_findings = len(summary.findings) - len(summary.new_findings)
    print(
        f"{summary.files} segment files: {summary.records_new} records imported, "
        f"{summary.records_known} already imported; {len(summary.findings)} findings "
        f"({known_findings} reported before), {len(serious)} alarms or warnings"
    )
    return 1 if serious else 0


def _open_existing(args: argparse.Namespace) -> Store:
    return Store.open(StationHome(args.home).database_path, create=False)


def _selected_scans(args: argparse.Namespace, store: Store) -> list[Scan]:
    since = args.since * 1_000_000_000 if args.since is not None else None
    scans = load_scans(store, since_ns=since, kiosk_prefix=args.kiosk)
    if args.device:
        needle = args.device.lower()
        scans = [s for s in scans if needle in s.device_label().lower()]
    return scans


def _findings(store: Store) -> list[tuple[str, ...]]:
    rows = store.query(
        "SELECT severity, kiosk_id, segment, record, message FROM findings "
        "WHERE severity != 'notice' ORDER BY kiosk_id, segment, record"
    )
    return [(s, k, "" if g < 0 else str(g), "" if r < 0 else str(r), m) for s, k, g, r, m in rows]


def cmd_report(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    scans = _selected_scans(args, store)
    if args.format == "html":
        if args.output is None:
            raise UsageError("--output", "an HTML report needs an output folder")
        written = write_html_report(args.output, scans, _findings(store), store, kiosk_prefix=args.kiosk)
        print(f"{len(scans)} scans: {printable(str(written[0]))}")
        return 0
    reviews = report_reviews(store)
    if args.format == "csv":
        text = csv_report(scans, reviews)
    else:
        text = json_report(scans, _findings(store), reviews) + "\n"
    _emit(text, args.output)
    return 0


def cmd_export_vics(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    wanted = args.scan
    matches = [s for s in load_scans(store) if wanted in (s.scan_id, s.key)]
    if not matches:
        raise StationError(wanted, "no such scan")
    if len(matches) > 1:
        raise StationError(wanted, f"{len(matches)} kiosks have a scan with this id: use KIOSK_ID:SCAN_ID")
    _emit(json.dumps(vics_case(matches[0], case_number=args.case_number), indent=2) + "\n", args.output)
    return 0


def cmd_kiosks(args: argparse.Namespace) -> int:
    kiosks = kiosk_overview(_open_existing(args))
    if args.json:
        print(json.dumps([k.to_json() for k in kiosks], indent=2))
        return 0
    for k in kiosks:
        names = ", ".join(printable(filter_label(f)) for f in k.filters) or "none journaled"
        print(
            f"{k.kiosk_id}  last sync {k.last_import}  newest record {k.newest_record}  "
            f"{k.segments} segments  {k.records} records  {k.alarms} alarms"
        )
        print(f"    filters: {names}")
    if not kiosks:
        print("no kiosks yet")
    return 0


def cmd_prepare_stick(args: argparse.Namespace) -> int:
    if args.valid_days < 1:
        raise UsageError("--valid-days", "must be at least 1")
    prepared = prepare_stick(
        StationHome(args.home),
        args.target,
        fs_uuid=args.uuid,
        valid_for=dt.timedelta(days=args.valid_days),
        filters=args.filter,
        trust_keys=args.trust_key,
        exclusions=not args.no_exclusions,
        shared=not args.no_shared,
    )
    print(
        f"sync stick {printable(str(prepared.folder))} (filesystem {prepared.fs_uuid}), token valid until "
        f"{prepared.expires:%Y-%m-%d %H:%M} UTC; {len(prepared.copied)} files for kiosks"
    )
    if prepared.exclusions is not None:
        count = len(prepared.exclusions.exclusions)
        print(f"exclusion list {prepared.exclusions.list_id}: {count} reviewed false positives")
    for note in prepared.notes:
        print(f"note: {printable(note)}")
    if prepared.shared is not None:
        print(f"shared filter of confirmed finds: {printable(prepared.shared.name)}, with the provider key")
    return 0


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise StationError(output, f"cannot write: {err.strerror}") from err
