"""``fieldtriage devices``: list the disks and phones the kiosk would take, or watch plug events."""

from __future__ import annotations

import argparse
import json
import select
from typing import Any

import pyudev

from agent.devices.identity import DeviceIdentity
from agent.devices.selection import DEFAULT_RULES, DeviceSelector
from agent.devices.source import UdevDeviceSource
from agent.phones.detect import gphoto_port, phone_identity, phone_kind, port_path, usb_properties

EXAMPLES = """examples:
  fieldtriage devices                 # the disks and phones the kiosk would take now
  fieldtriage devices list --all      # every disk, with why it is or is not taken
  fieldtriage devices watch --json    # plug and unplug events, one JSON object each
"""


def _options(parser: argparse.ArgumentParser, inherited: bool) -> None:
    """The options of ``devices`` and of each action (not given after the action: the ones before)."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if inherited else {}
    parser.add_argument("--json", action="store_true", help="one JSON object per device or event", **default)
    parser.add_argument(
        "--match", action="append", metavar="KEY=VALUE",
        help=f"udev property rule, shell wildcards, KEY!=VALUE negates (default {' '.join(DEFAULT_RULES)})",
        **default,
    )  # fmt: skip
    parser.add_argument(
        "--all", action="store_true", help="also list disks not taken, with the reason", **default
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="list the disks and phones the kiosk would take, or watch events",
        description="List the disks and phones the kiosk would take now (the default), or watch events.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(parser, inherited=False)
    parser.set_defaults(handler=cmd_devices, action="list")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=False)
    for name, purpose in (
        ("list", "the disks and phones present, and whether each is taken (the default)"),
        ("watch", "print plug and unplug events until Ctrl-C"),
    ):
        action = actions.add_parser(name, help=purpose, description=purpose[0].upper() + purpose[1:] + ".")
        _options(action, inherited=True)
        action.set_defaults(handler=cmd_devices, action=name)


def cmd_devices(args: argparse.Namespace) -> int:
    selector = DeviceSelector.from_texts(args.match or DEFAULT_RULES)
    if args.action == "watch":
        return _watch(selector, args.json)
    context = pyudev.Context()
    for device in context.list_devices(subsystem="block", DEVTYPE="disk"):
        identity = DeviceIdentity.from_udev(device)
        number = f"{identity.properties.get('MAJOR', '')}:{identity.properties.get('MINOR', '')}"
        refusal = selector.refusal(device.properties, number) or ("" if identity.present else "no media")
        if refusal and not args.all:
            continue
        if args.json:
            print(json.dumps({**identity.describe(), "taken": not refusal, "reason": refusal}))
        else:
            mark = "taken  " if not refusal else "skipped"
            size = f"{identity.size / 1e9:.1f} GB"
            print(f"{mark} {identity.label()}  {size}  port {identity.port_path or '-'}  {refusal}".rstrip())
    for device in context.list_devices(subsystem="usb", DEVTYPE="usb_device"):
        properties = usb_properties(device)
        kind = phone_kind(properties)
        if kind is None:
            continue
        phone = phone_identity(properties, port_path(device), device.device_path)
        if args.json:
            print(
                json.dumps(
                    {**phone.describe(), "taken": True, "reason": "", "gphoto2_port": gphoto_port(phone)}
                )
            )
        else:
            print(f"taken   {phone.label()}  phone ({kind}, {gphoto_port(phone)})  port {phone.port_path}")
    return 0


def _watch(selector: DeviceSelector, as_json: bool) -> int:
    with UdevDeviceSource(selector) as source:
        while True:
            select.select([source], [], [], source.timeout())
            for event in source.poll():
                if as_json:
                    print(json.dumps({"event": event.kind, **event.identity.describe()}), flush=True)
                else:
                    print(f"{event.kind:9} {event.identity.label()}", flush=True)
    return 0  # pragma: no cover  (ends with Ctrl-C)
