"""``fieldtriage journal ...`` on the kiosk: ``export FOLDER`` (the sync copy, by hand: each copy
ends with an export seal signed by the device key, so the station can check it whole) and
``status`` (segments, sizes, what is not yet synced; the kiosk cannot read the records)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.journal.sync import export_segments, load_sync_state, unsynced_segments
from agent.journal.tail import segment_files
from filters.errors import JournalError, printable

DEFAULT_JOURNAL = Path("/var/lib/fieldtriage/journal")
EXAMPLES = """examples:
  fieldtriage journal status                     # segments, sizes, what the station has not had yet
  fieldtriage journal export /media/stick        # copy those segments by hand, each with its seal
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "journal",
        help="the kiosk's encrypted journal: export, status",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="journal_command", required=True, metavar="COMMAND")
    export = commands.add_parser("export", help="copy unsynced segments to a folder (e.g. a stick)")
    export.add_argument("target", type=Path, metavar="FOLDER", help="where the encrypted segments are copied")
    export.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help=f"default {DEFAULT_JOURNAL}")
    export.add_argument(
        "--device-key",
        type=Path,
        default=None,
        metavar="FILE",
        help="the device key that signs the export seals (default: the one the journal is written with)",
    )
    export.set_defaults(handler=cmd_export)
    status = commands.add_parser("status", help="list segments and what is not yet synced")
    status.add_argument("--journal", type=Path, default=DEFAULT_JOURNAL, help=f"default {DEFAULT_JOURNAL}")
    status.set_defaults(handler=cmd_status)


def _existing_journal(folder: Path) -> Path:
    if not folder.is_dir():
        raise JournalError(folder, "no journal folder here (pass --journal)")
    return folder


def cmd_export(args: argparse.Namespace) -> int:
    if not args.target.is_dir():
        raise JournalError(args.target, "no such folder")
    copied = export_segments(_existing_journal(args.journal), args.target, args.device_key)
    for path in copied:
        print(printable(str(path)))
    print(f"{len(copied)} segments copied")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    folder = _existing_journal(args.journal)
    exported = load_sync_state(folder)
    pending = set(unsynced_segments(folder))
    for number, path in segment_files(folder):
        size = path.stat().st_size
        state = "unsynced" if path in pending else "synced"
        print(f"{number:8d}  {size:10d} bytes  {state} ({exported.get(path.name, 0)} bytes exported)")
    print(f"{len(pending)} segments not yet synced")
    return 0
