"""``fieldtriage agent``: run the kiosk daemon; ``fieldtriage agent status``: what it is doing."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_config
from agent.daemon.main import REFRESH_SECONDS, STATUS_SECONDS, Daemon
from agent.daemon.notify import SystemdNotifier
from agent.daemon.provision import provision_kiosk
from agent.daemon.status import EXIT_STATUS, agent_status, format_status
from agent.daemon.sync import SyncSetup
from agent.devices.mounter import Mounter
from agent.devices.selection import DeviceSelector
from agent.devices.source import UdevDeviceSource
from agent.exhibit.reader import label_source
from agent.journal import EncryptedJournal, Journal, PlainJournal
from agent.journal.records import kiosk_header
from agent.journal.reopening import ReopeningJournal
from agent.lights.bay import (
    GpioLights,
    LightsBackend,
    LightsUnavailable,
    RecordingLights,
    TerminalLights,
    gpio_pin_factory,
)
from agent.lights.button import KIOSK_BUTTON, AckButton, GpioButton
from agent.phones.camera import PhoneBackend
from filters.errors import ConfigError, FieldtriageError, JournalError, JournalLocked, KeyFileError, printable
from filters.keys import load_public_key

DEFAULT_CONFIG = Path("/etc/fieldtriage/agent.toml")
# The daemon rewrites its status at least every loop turn (STATUS_SECONDS, the loop waking every
# REFRESH_SECONDS at most): not rewritten for three of those and a margin, it is taken as hung.
STALE_SECONDS = 3 * max(STATUS_SECONDS, REFRESH_SECONDS) + 5.0


EXAMPLES = """examples:
  fieldtriage agent                          # the kiosk daemon (systemd runs it: fieldtriage-agent.service)
  fieldtriage agent status                   # exit 0 ready, 1 fault, 3 not running
  fieldtriage agent status --json            # the same facts as JSON, for monitoring
  fieldtriage agent provision                # first boot: the kiosk's key and enrollment.json
  fieldtriage agent --config ./agent.toml --verbose
"""
AGENT_ACTIONS = (
    ("run", "run the kiosk daemon (the default; systemd starts it)"),
    ("status", "what each bay shows and why: exit 0 ready, 1 in fault, 3 not running"),
    ("provision", "create this kiosk's signing key and the enrollment file the station registers it from"),
)


def _options(parser: argparse.ArgumentParser, inherited: bool) -> None:
    """The options of ``agent`` and of each action (not given after the action: the ones before)."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if inherited else {}
    parser.add_argument(
        "--config", type=Path, help=f"the kiosk's configuration (default {DEFAULT_CONFIG})",
        **(default or {"default": DEFAULT_CONFIG}),
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="status or enrollment as JSON", **default)
    parser.add_argument("--verbose", action="store_true", help="log every step", **default)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run the kiosk daemon, show its status, or provision a new kiosk",
        description="The kiosk agent: run the daemon (the default), show its status, or provision a kiosk.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(parser, inherited=False)
    parser.set_defaults(handler=cmd_agent, action="run")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=False)
    for name, purpose in AGENT_ACTIONS:
        action = actions.add_parser(name, help=purpose, description=purpose[0].upper() + purpose[1:] + ".")
        _options(action, inherited=True)
        action.set_defaults(handler=cmd_agent, action=name)


def cmd_agent(args: argparse.Namespace) -> int:
    if args.action == "provision":
        config = load_config(args.config, check_folders=False)
        try:
            enrollment = provision_kiosk(config.paths.device_key, config.kiosk.name, config.kiosk.location)
        except KeyFileError as err:
            raise naming_the_key(config, err) from err
        written = printable(str(config.paths.device_key.with_name("enrollment.json")))
        line = f"kiosk {enrollment['kiosk_id']}: enrollment file {written}"
        print(json.dumps(enrollment, indent=2) if args.json else line)
        return 0
    if args.action == "status":  # exit 0 ready, 1 fault, 3 not running (agent/daemon/status.py)
        config = load_config(args.config, check_folders=False)
        report = agent_status(config.paths.runtime / "status.json", STALE_SECONDS)
        report.setdefault("kiosk", {"name": config.kiosk.name, "location": config.kiosk.location})
        print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_status(report))
        return EXIT_STATUS[report["state"]]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = load_config(args.config)
    return build_daemon(config).run()


def lights_for(config: AgentConfig, pin_factory: Any = None) -> dict[str, LightsBackend]:
    """Each bay's lights; a backend that cannot be used here (``gpio`` without GPIO) is one
    ``ConfigError`` naming ``lights.backend`` and what was tried."""
    backend = config.lights.backend
    lights: dict[str, LightsBackend] = {}
    where = ""
    try:
        if backend == "mock" and pin_factory is None:
            from gpiozero.pins.mock import MockFactory

            pin_factory = MockFactory()
        if backend == "gpio" and pin_factory is None:
            pin_factory = gpio_pin_factory(config.lights.gpio_chip, config.lights.board_revision)
        for index, bay in enumerate(config.bays):
            where = f"bays[{index}]: "
            if backend in ("gpio", "mock"):
                lights[bay.name] = GpioLights(
                    bay.red, bay.amber, bay.green, bay.buzzer,
                    active_high=config.lights.active_high, pin_factory=pin_factory,
                )  # fmt: skip
            elif backend == "terminal":
                lights[bay.name] = TerminalLights(bay.name)
            else:
                lights[bay.name] = RecordingLights()
    except LightsUnavailable as err:
        for made in lights.values():
            made.close()
        raise ConfigError(
            config.source, f"lights.backend: {backend!r} cannot be used: {where}{err.reason}"
        ) from err
    return lights


def pin_factory_for(config: AgentConfig, pin_factory: Any = None) -> Any:
    """The pin factory the lights and the acknowledge buttons share (``gpio``, ``mock``), or None
    (``terminal``, ``none``); one ``ConfigError`` naming ``lights.backend`` where there is none."""
    backend = config.lights.backend
    if pin_factory is not None or backend not in ("gpio", "mock"):
        return pin_factory
    if backend == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    try:
        return gpio_pin_factory(config.lights.gpio_chip, config.lights.board_revision)
    except LightsUnavailable as err:
        raise ConfigError(config.source, f"lights.backend: {backend!r} cannot be used: {err.reason}") from err


def buttons_for(config: AgentConfig, pin_factory: Any = None) -> dict[str, AckButton]:
    """The acknowledge buttons, by bay name (``KIOSK_BUTTON``: ``lights.button``, for every bay);
    read with the ``gpio`` and ``mock`` backends only (with another, logged and left out). A pin
    that cannot be claimed is one ``ConfigError`` naming its key."""
    wanted = [
        (b.name, b.button, f"bays[{i}].button") for i, b in enumerate(config.bays) if b.button is not None
    ]
    if config.lights.button is not None:
        wanted.append((KIOSK_BUTTON, config.lights.button, "lights.button"))
    if not wanted:
        return {}
    if config.lights.backend not in ("gpio", "mock"):
        logging.getLogger(__name__).warning(
            "%s: no acknowledge button with lights.backend %r (gpio and mock only)",
            ", ".join(where for _, _, where in wanted),
            config.lights.backend,
        )
        return {}
    buttons: dict[str, AckButton] = {}
    for key, pin, where in wanted:
        try:
            buttons[key] = GpioButton(pin, pin_factory=pin_factory, role=where)
        except LightsUnavailable as err:
            for made in buttons.values():
                made.close()
            raise ConfigError(config.source, f"{where}: cannot be used: {err.reason}") from err
    return buttons


def make_folder(config: AgentConfig, key: str) -> None:
    """Make the folder ``paths.KEY`` (the runtime or journal folder) or refuse with one line."""
    folder: Path = getattr(config.paths, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            config.source, f"paths.{key}: cannot make {printable(str(folder))}: {err.strerror}"
        ) from err


def naming_the_key(config: AgentConfig, err: KeyFileError) -> FieldtriageError:
    """``err`` about a configured key file, as a ``ConfigError`` naming its key as well."""
    for key in ("device_key", "station_key", "station_signing_key"):
        path = getattr(config.paths, key)
        if path is not None and err.subject == os.fspath(path):
            return ConfigError(config.source, f"paths.{key}: {err}")
    return err


def open_journal(config: AgentConfig) -> Journal:
    """The encrypted journal when a station key is configured, else a plain local log. A journal
    folder that cannot be opened (a segment it did not write, one that does not verify) does not
    stop the kiosk: it runs showing the fault signal and tries again at every device."""
    folder = config.paths.journal
    make_folder(config, "journal")
    kiosk = kiosk_header(config.kiosk.name, config.kiosk.location)  # in every record
    if config.paths.station_key is None:
        logging.getLogger(__name__).warning("no station key configured: journal is a plain local log")
        return PlainJournal(folder, kiosk=kiosk)
    device_key, station_key = config.paths.device_key, config.paths.station_key

    def encrypted() -> Journal:
        return EncryptedJournal.open(folder, device_key, station_key, kiosk=kiosk)

    try:  # a wrong key file or a second agent on the same folder stops the start
        return encrypted()
    except KeyFileError as err:
        raise naming_the_key(config, err) from err
    except JournalLocked:
        raise
    except JournalError as err:
        logging.getLogger(__name__).error("journal cannot be opened, running with the fault signal: %s", err)
        return ReopeningJournal(encrypted, err)


def build_daemon(config: AgentConfig, *, pin_factory: Any = None) -> Daemon:
    # the lights first: a kiosk that cannot show anything is refused before anything is opened
    pin_factory = pin_factory_for(config, pin_factory)
    lights = lights_for(config, pin_factory)
    try:
        buttons = buttons_for(config, pin_factory)
    except ConfigError:
        for made in lights.values():
            made.close()
        raise
    make_folder(config, "runtime")
    mounter = Mounter(config.paths.runtime)
    selector = DeviceSelector.from_texts(config.devices.match)
    source = UdevDeviceSource(selector, settle_seconds=config.devices.settle_seconds)
    signing_key = None
    if config.paths.station_signing_key is not None:
        try:
            signing_key = load_public_key(config.paths.station_signing_key)
        except KeyFileError as err:
            raise naming_the_key(config, err) from err
    journal = open_journal(config)

    def journal_health() -> str | None:
        return None if journal.healthy else f"journal: {journal.last_error}"

    sync = None if signing_key is None else SyncSetup(signing_key, journal, config.paths)
    return Daemon(
        config,
        source=source,
        mounter=mounter,
        lights=lights,
        journal=journal,
        journal_health=journal_health,
        notifier=SystemdNotifier.from_environment(),
        sync=sync,
        phones=phone_backend(),
        labels=label_source(config.exhibit.scanner),
        buttons=buttons,
    )


def phone_backend() -> PhoneBackend | None:
    """libgphoto2 for phones, or None (logged) where its module cannot be loaded."""
    try:
        from agent.phones.gphoto import GphotoBackend
    except ImportError as err:
        logging.getLogger(__name__).error("phones cannot be read: %s", err)
        return None
    return GphotoBackend()
