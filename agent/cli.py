"""The ``fieldtriage`` command: one entry point, a subcommand per job.

Errors a user or a device can cause end as one line on stderr (``fieldtriage: SUBJECT: REASON``)
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from filters import __version__
from filters import cli as filter_cli
from filters.errors import FieldtriageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldtriage",
        description="On-scene triage kiosk: signed contraband filters, read-only scanning, lights.",
    )
    parser.add_argument("--version", action="version", version=f"fieldtriage {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    filter_cli.register(subparsers)
    from agent import demo
    from agent.daemon import cli as agent_cli
    from agent.devices import cli as devices_cli
    from agent.journal import cli as journal_cli
    from agent.scan import cli as scan_cli
    from station import cli as station_cli

    scan_cli.register(subparsers)
    devices_cli.register(subparsers)
    agent_cli.register(subparsers)
    journal_cli.register(subparsers)
    station_cli.register(subparsers)
    demo.register(subparsers)
    purpose_lines(parser)
    return parser


def purpose_lines(parser: argparse.ArgumentParser) -> None:
    """Every command's own ``--help`` opens with the purpose line its parent lists for it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and listed.get(name):
                    sub.description = str(listed[name])
                purpose_lines(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except FieldtriageError as err:
        print(f"fieldtriage: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fieldtriage: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
