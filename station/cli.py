"""``fieldtriage station ...``: the unit workstation's commands.

init (keys), import (verify, decrypt, store), report (HTML/CSV/JSON), export-vics (Project VIC case
file), kiosks (enrolled kiosks, last sync, filters; ``kiosks add`` enrolls one from its enrollment file,
``kiosks retire`` revokes its key from a date), prepare-stick (sync token, filters, trust keys).
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
from station.importer import import_sources, kept_aside_segments
from station.kiosks import (
    enroll_kiosk,
    kiosk_labels,
    kiosk_overview,
    read_enrollment,
    resolve_kiosk,
    retire_kiosk,
)
from station.report import csv_report, json_report, report_reviews, write_html_report
from station.review_cli import add_commands as add_review_commands
from station.scans import Scan, filter_label, load_scans
from station.stick import prepare_stick
from station.store import Store
from station.vics import vics_case

STATION_EXAMPLES = """examples:
  fieldtriage station init --home ~/station
  fieldtriage station kiosks add enrollment.json --name "CPU bay 2" --location "Phnom Penh" --home ~/station
  fieldtriage station prepare-stick /dev/sdc --home ~/station        # a sync stick for the kiosks
  fieldtriage station import /media/sync-stick --home ~/station
  fieldtriage station report --home ~/station -o report/             # report/index.html
  fieldtriage station review list --home ~/station
  fieldtriage station share --home ~/station -o confirmed.ftf
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        type=Path,
        help="station folder (default $FIELDTRIAGE_STATION_HOME or ~/.fieldtriage-station)",
    )
    parser = subparsers.add_parser(
        "station",
        help="the unit workstation: keys, journal import, reports",
        description="The unit's workstation: enrolled kiosks, journal import, reports, review, sharing.",
        epilog=STATION_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="station_command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", parents=[common], help="create the station's keys")
    init.set_defaults(handler=cmd_init)

    importing = commands.add_parser("import", parents=[common], help="verify, decrypt and store journals")
    importing.add_argument("sources", nargs="*", type=Path, metavar="SOURCE", help="segment file or folder")
    importing.add_argument(
        "--kept-aside",
        action="store_true",
        help="only the segments kept aside for kiosks not enrolled then (every import retries them too)",
    )
    importing.set_defaults(handler=cmd_import)

    report = commands.add_parser("report", parents=[common], help="scans as HTML, CSV or JSON")
    report.add_argument(
        "--format", choices=("html", "csv", "json"), default="html",
        help="html: pages for the analyst (index, kiosks, a page per scan); csv: a row per scan; json: all",
    )  # fmt: skip
    report.add_argument("-o", "--output", type=Path, help="folder (html) or file (csv, json; default stdout)")
    report.add_argument("--since", type=parse_date, help="scans started at or after (YYYY-MM-DD or ISO 8601)")
    report.add_argument("--device", help="only devices whose vendor, model or serial contains this")
    report.add_argument("--kiosk", help="only this kiosk: its enrolled name, its id or the start of it (4+)")
    report.set_defaults(handler=cmd_report)

    vics = commands.add_parser("export-vics", parents=[common], help="a scan's hits as a VICS 2.0 case file")
    vics.add_argument("scan", metavar="SCAN", help="scan id, or KIOSK_ID:SCAN_ID when ids repeat")
    vics.add_argument("--case-number", help="the case number written into the VICS file")
    vics.add_argument("-o", "--output", type=Path, help="file (default stdout)")
    vics.set_defaults(handler=cmd_export_vics)

    kiosks = commands.add_parser(
        "kiosks", parents=[common], help="enrolled kiosks (names, last sync, filters); enroll or retire one"
    )
    kiosks.add_argument("--json", action="store_true", help="print the kiosks as JSON")
    kiosks.set_defaults(handler=cmd_kiosks)
    below = argparse.ArgumentParser(add_help=False)  # --home after the subcommand, not reset before it
    below.add_argument("--home", type=Path, default=argparse.SUPPRESS, help="station folder")
    kiosk_commands = kiosks.add_subparsers(dest="kiosks_command", metavar="ACTION")
    add = kiosk_commands.add_parser(
        "add",
        parents=[below],
        help="enroll a kiosk from the enrollment.json 'fieldtriage agent provision' wrote",
    )
    add.add_argument(
        "enrollment", type=Path, metavar="ENROLLMENT.json",
        help="the file 'fieldtriage agent provision' wrote (/var/lib/fieldtriage/enrollment.json)",
    )  # fmt: skip
    add.add_argument("--name", required=True, help='what people call it: "Phnom Penh CPU bay 2"')
    add.add_argument("--location", default="", help="where it stands")
    add.set_defaults(handler=cmd_kiosks_add)
    retire = kiosk_commands.add_parser(
        "retire", parents=[below], help="revoke a kiosk's key from a date (later records are refused)"
    )
    retire.add_argument("kiosk", metavar="KIOSK", help="its name, id, or the start of its id")
    retire.add_argument(
        "--from",
        dest="retired_from",
        type=parse_date,
        help="records dated from then on are refused (YYYY-MM-DD or ISO 8601; default now)",
    )
    retire.set_defaults(handler=cmd_kiosks_retire)

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
    if not args.sources and not args.kept_aside:
        raise UsageError("SOURCE", "give segment files or folders, or --kept-aside")
    summary = import_sources(StationHome(args.home), args.sources)
    for finding in sorted(
        summary.new_findings,
        key=lambda f: (SEVERITY_ORDER[f.severity], f.kiosk or "", f.segment or 0, f.record or 0),
    ):
        print(finding.line(summary.kiosk_labels))
    serious = [f for f in summary.findings if f.severity != "notice"]
    known_findings = len(summary.findings) - len(summary.new_findings)
    kept = ""
    if summary.records_kept_aside:
        kept += f", {summary.records_kept_aside} records kept aside"
    if summary.segments_kept_aside:
        kept += f", {len(summary.segments_kept_aside)} segments of kiosks not enrolled kept aside"
    if summary.kept_aside_imported:
        kept += f", {len(summary.kept_aside_imported)} kept-aside segments imported"
    print(
        f"{summary.files} segment files: {summary.records_new} records imported, "
        f"{summary.records_known} already imported{kept}; {len(summary.findings)} findings "
        f"({known_findings} reported before), {len(serious)} alarms or warnings"
    )
    return 1 if serious else 0


def _open_existing(args: argparse.Namespace) -> Store:
    return Store.open(StationHome(args.home).database_path, create=False)


def _kiosk_prefix(wanted: str | None, store: Store) -> str | None:
    """``--kiosk``: the id of the enrolled kiosk it names (its name, its id or the start of it)."""
    return None if wanted is None else resolve_kiosk(store, wanted)


def _selected_scans(args: argparse.Namespace, store: Store) -> list[Scan]:
    since = args.since * 1_000_000_000 if args.since is not None else None
    scans = load_scans(store, since_ns=since, kiosk_prefix=_kiosk_prefix(args.kiosk, store))
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
        written = write_html_report(
            args.output, scans, _findings(store), store, kiosk_prefix=_kiosk_prefix(args.kiosk, store)
        )
        print(f"{len(scans)} scans: {printable(str(written[0]))}")
        return 0
    reviews, labels = report_reviews(store), kiosk_labels(store)
    if args.format == "csv":
        text = csv_report(scans, reviews, labels)
    else:
        text = json_report(scans, _findings(store), reviews, labels) + "\n"
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
    home = StationHome(args.home)
    waiting = kept_aside_segments(home)
    kiosks = kiosk_overview(_open_existing(args)) if home.database_path.exists() or not waiting else []
    if args.json:
        unknown = [{"kiosk_id": k, "kept_aside_segments": [str(p) for p in v]} for k, v in waiting.items()]
        document = {"kiosks": [k.to_json() for k in kiosks], "not_enrolled": unknown}
        print(json.dumps(document, indent=2, default=lambda v: v.hex() if isinstance(v, bytes) else str(v)))
        return 0
    for k in kiosks:
        names = ", ".join(printable(filter_label(f)) for f in k.filters) or "none journaled"
        where = f"  at {printable(k.location)}" if k.location else ""
        host = f"host {printable(k.hostname)}, " if k.hostname else ""
        retired = f"  RETIRED from {k.retired_from}" if k.retired_from else ""
        print(f"{k.label}{where}  (kiosk {k.kiosk_id}){retired}")
        print(
            f"    {host}enrolled {k.enrolled}  last import {k.last_import}  newest record {k.newest_record}"
        )
        print(f"    {k.segments} segments  {k.records} records  {k.kept_aside} kept aside  {k.alarms} alarms")
        print(f"    filters: {names}")
    for kiosk_id, copies in waiting.items():
        print(
            f"not enrolled: kiosk {kiosk_id}, {len(copies)} segments kept aside "
            "(enroll it with 'fieldtriage station kiosks add', "
            "then 'fieldtriage station import --kept-aside')"
        )
    if not kiosks and not waiting:
        print("no kiosks enrolled yet ('fieldtriage station kiosks add ENROLLMENT.json --name NAME')")
    return 0


def cmd_kiosks_add(args: argparse.Namespace) -> int:
    home = StationHome(args.home)
    home.journal_key_id()  # an initialised station
    enrollment = read_enrollment(args.enrollment)
    store = Store.open(home.database_path)
    try:
        enroll_kiosk(store, enrollment, args.name, args.location)
    finally:
        store.close()
    print(
        f"enrolled kiosk {enrollment.kiosk_id} as {printable(args.name.strip())} "
        f"(host {printable(enrollment.hostname)}, provisioned {enrollment.created})"
    )
    waiting = kept_aside_segments(home).get(enrollment.kiosk_id, [])
    if waiting:
        print(
            f"{len(waiting)} of its segments are kept aside: "
            "'fieldtriage station import --kept-aside' imports them"
        )
    return 0


def cmd_kiosks_retire(args: argparse.Namespace) -> int:
    store = _open_existing(args)
    try:
        kiosk = resolve_kiosk(store, args.kiosk)
        from_ns = (
            args.retired_from if args.retired_from is not None else int(dt.datetime.now(dt.UTC).timestamp())
        )
        moved = retire_kiosk(store, kiosk, from_ns * 1_000_000_000)
    finally:
        store.close()
    print(
        f"kiosk {kiosk} retired from {dt.datetime.fromtimestamp(from_ns, dt.UTC):%Y-%m-%dT%H:%M:%SZ}: "
        f"its records dated from then on are refused; {moved} imported ones taken out of the reports"
    )
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
