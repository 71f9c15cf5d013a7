"""The kiosk's configuration: TOML, validated whole at start (docs/operations.md lists every key).

Unknown keys, wrong types, bad values, missing folders and pin clashes are refused with one line
naming the file and the key. The file itself is read through ``filters.safe_files`` (a FIFO or a
device is refused, never waited on; at most 256 KiB). Example::

    >>> config = parse_config({"bays": [{"name": "front", "red": 17, "amber": 27, "green": 22}],
    ...                        "lights": {"backend": "mock"}}, "agent.toml", check_folders=False)
    >>> config.bays[0].port, config.scan.mode, config.devices.match
    ('*', 'auto', ('ID_BUS=usb',))
    >>> try:
    ...     parse_config({"devices": {"settle_seconds": float("nan")}}, "agent.toml")
    ... except ConfigError as err:
    ...     print(err)
    agent.toml: devices.settle_seconds: must be a finite number between 0 and 60, not nan
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.devices.selection import DEFAULT_RULES, parse_rule
from agent.scan.blocks import BlockSettings
from agent.scan.engine import MAX_WORKERS
from filters.container import EXPIRY_WARNING_DAYS
from filters.errors import ConfigError, UsageError, printable
from filters.safe_files import file_kind, read_regular_file

MODES = ("auto", "quick", "full")
LIGHT_BACKENDS = ("gpio", "mock", "terminal", "none")
MAX_CONFIG_BYTES = 256 * 1024
MAX_TEXT = 256  # characters of a text value (a port glob, a match rule, a mode)
MAX_PATH = 4096  # PATH_MAX
MAX_BAY_NAME = 32
MAX_MATCH_RULES = 32
MAX_SETTLE_SECONDS = 60.0
MAX_EXPIRY_WARNING_DAYS = 365
GPIO_PINS = range(28)  # BCM GPIO 0-27 on the 40-pin header
# the kernel's own file systems: nothing of the kiosk's belongs there
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")
FOLDER_KEYS = ("runtime", "filters", "trust", "journal")
SHOWN_CHARACTERS = 40
SECTIONS = ("paths", "scan", "devices", "filters", "lights", "bays", "blocks", "exhibit", "kiosk")
MAX_KIOSK_NAME, MAX_KIOSK_LOCATION = 64, 128  # characters of kiosk.name and kiosk.location
MAX_EXHIBIT_TIMEOUT_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class PathsConfig:
    runtime: Path = Path("/run/fieldtriage")
    filters: Path = Path("/var/lib/fieldtriage/filters")
    trust: Path = Path("/var/lib/fieldtriage/trust")
    journal: Path = Path("/var/lib/fieldtriage/journal")
    device_key: Path = Path("/var/lib/fieldtriage/device.key")
    station_key: Path | None = None
    station_signing_key: Path | None = None


@dataclass(frozen=True)
class ScanConfig:
    mode: str = "auto"
    stop_at_first_priority: bool = False
    workers: int = field(default=0, metadata={"range": (0, MAX_WORKERS)})


@dataclass(frozen=True)
class DevicesConfig:
    match: tuple[str, ...] = DEFAULT_RULES
    settle_seconds: float = field(default=0.4, metadata={"range": (0.0, MAX_SETTLE_SECONDS)})


@dataclass(frozen=True)
class FiltersConfig:
    # a filter in use that expires within this many days is warned about: the idle lights show
    # "ready, a filter expires soon" and the status file says which (0: never warn)
    expiry_warning_days: int = field(
        default=EXPIRY_WARNING_DAYS, metadata={"range": (0, MAX_EXPIRY_WARNING_DAYS)}
    )


@dataclass(frozen=True)
class LightsConfig:
    backend: str = "gpio"
    active_high: bool = True
    # gpio only: the GPIO chip (None: the board's own, as gpiozero picks it) and, for a board whose
    # kernel does not say it is a Raspberry Pi (a carrier board, the system test), the Pi revision
    # code whose header numbering the pins follow
    gpio_chip: int | None = field(default=None, metadata={"range": (0, 63)})
    board_revision: str = field(default="", metadata={"allow_empty": True})
    # gpio and mock only: the kiosk's acknowledge button (BCM GPIO, to ground): it silences every
    # bay's priority alarm; a bay's own button ([[bays]] button) silences that bay's
    button: int | None = field(default=None, metadata={"range": (0, GPIO_PINS[-1])})


@dataclass(frozen=True)
class KioskConfig:
    # what agent status, the status file and every journal record call this kiosk ("": not set)
    name: str = field(default="", metadata={"max_length": MAX_KIOSK_NAME, "allow_empty": True})
    location: str = field(default="", metadata={"max_length": MAX_KIOSK_LOCATION, "allow_empty": True})


@dataclass(frozen=True)
class ExhibitConfig:
    # udev property rules (devices.match's syntax) naming the barcode scanner among the keyboards;
    # none (the default): no scanner is read, and no keyboard is ever taken from the console
    scanner: tuple[str, ...] = ()
    # a scanned reference no device has taken within this time is dropped (journaled)
    timeout_seconds: float = field(default=300.0, metadata={"range": (1.0, MAX_EXHIBIT_TIMEOUT_SECONDS)})


@dataclass(frozen=True)
class BlocksConfig:
    # [blocks]: after a device's file scan, a sample of its raw 4 KiB blocks against the filters'
    # block sets (docs/block-sampling.md), sized so that a known item of target_mib stored
    # contiguously anywhere on the device is found with this confidence, within the time budget;
    # only with a filter that has a block set
    enabled: bool = True
    target_mib: float = field(default=20.0, metadata={"range": (0.0625, 1048576.0)})
    confidence: float = field(default=0.99, metadata={"range": (0.5, 0.999999)})
    time_budget_seconds: float = field(default=1800.0, metadata={"range": (1.0, 7 * 86400.0)})

    def settings(self) -> BlockSettings | None:
        """What the bay's block sample aims for (None: block sampling is off)."""
        if not self.enabled:
            return None
        return BlockSettings(int(self.target_mib * (1 << 20)), self.confidence, self.time_budget_seconds)


@dataclass(frozen=True)
class BayConfig:
    name: str = field(metadata={"max_length": MAX_BAY_NAME})
    red: int
    amber: int
    green: int
    port: str = "*"
    buzzer: int | None = None
    button: int | None = None  # the bay's acknowledge button (BCM GPIO, to ground)


@dataclass(frozen=True)
class AgentConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    lights: LightsConfig = field(default_factory=LightsConfig)
    bays: tuple[BayConfig, ...] = ()
    source: str = "<defaults>"
    filters: FiltersConfig = field(default_factory=FiltersConfig)  # [filters]; after source: positions kept
    blocks: BlocksConfig = field(default_factory=BlocksConfig)  # [blocks]: the block sample
    exhibit: ExhibitConfig = field(default_factory=ExhibitConfig)  # [exhibit]: the barcode scanner
    kiosk: KioskConfig = field(default_factory=KioskConfig)  # [kiosk]: its name and location


def load_config(path: str | os.PathLike[str], *, check_folders: bool = True) -> AgentConfig:
    path = Path(path)
    data = read_regular_file(path, MAX_CONFIG_BYTES, ConfigError, "a configuration file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(path, f"not valid UTF-8 at line {line} (byte 0x{data[err.start]:02x})") from err
    try:
        raw = tomllib.loads(text)
    except ValueError as err:  # TOMLDecodeError, and int() refusing a number of thousands of digits
        raise ConfigError(path, f"not valid TOML: {printable(str(err))}") from err
    except RecursionError as err:
        raise ConfigError(path, "not valid TOML: nested too deeply") from err
    return parse_config(raw, str(path), check_folders=check_folders)


def shown(value: Any) -> str:
    """``value`` for a one-line message: short, escaped, never thousands of digits.

    >>> shown(float("nan")), shown(10**400), shown("x" * 100)
    ('nan', 'a 1329-bit number', "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...")
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit number"
    try:
        text = repr(value)
    except ValueError:  # a list holding a number too long to write out
        return f"a {type(value).__name__}"
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "..."


def _name(key: str) -> str:
    """A key name from the file (maybe unknown, so maybe anything) for a message: every character
    that does not print (controls, but also a right-to-left override) escaped, at most 40 shown."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in printable(key))
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "..."


def _section(raw: Mapping[str, Any], source: str, name: str, kind: type[Any]) -> Any:
    values = raw.get(name, {})
    if not isinstance(values, dict):
        raise ConfigError(source, f"[{name}] must be a table")
    return _build(kind, values, source, name)


def _build(kind: type[Any], values: Mapping[str, Any], source: str, where: str) -> Any:
    known = {f.name: f for f in fields(kind)}
    for key in values:
        if key not in known:
            raise ConfigError(source, f"{where}.{_name(key)}: unknown key (known: {', '.join(known)})")
    converted: dict[str, Any] = {}
    for key, value in values.items():
        converted[key] = _convert(value, known[key], source, f"{where}.{key}")
    try:
        return kind(**converted)
    except TypeError as err:
        missing = [
            n
            for n, f in known.items()
            if n not in values and f.default is MISSING and f.default_factory is MISSING
        ]
        raise ConfigError(source, f"{where}: missing key {missing[0] if missing else err}") from err


def _text_problem(text: str, limit: int) -> str | None:
    """Why ``text`` cannot be a value (None when it can): a NUL byte, characters that do not print
    (controls, a right-to-left override: nothing a log line or a terminal would show wrongly), too
    long, empty."""
    if "\0" in text:
        return "must not contain a NUL byte"
    for index, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            return f"must not contain control characters ({ch!r} at {index})"
        if not ch.isprintable():
            return f"must not contain characters that do not print ({ch!r} at {index})"
    if len(text) > limit:
        return f"too long ({len(text)} characters, at most {limit})"
    if not text.strip():
        return "must not be empty"
    return None


def _allows_empty(spec: Field[Any], value: str) -> bool:
    return value == "" and bool(spec.metadata.get("allow_empty"))


def _convert(value: Any, spec: Field[Any], source: str, key: str) -> Any:
    annotation = str(spec.type)
    bounds: tuple[float, float] | None = spec.metadata.get("range")

    def wrong(expected: str) -> ConfigError:
        return ConfigError(source, f"{key}: must be {expected}, not {type(value).__name__} {shown(value)}")

    def problem(reason: str) -> ConfigError:
        return ConfigError(source, f"{key}: {reason}")

    if annotation.startswith("Path"):
        if not isinstance(value, str) or not value:
            raise wrong("a path (text)")
        reason = _text_problem(value, MAX_PATH)
        if reason:
            raise problem(reason)
        return Path(value)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if annotation.startswith("int"):
        expected = f"a whole number from {bounds[0]} to {bounds[1]}" if bounds else "a whole number"
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong(expected)
        if bounds and not bounds[0] <= value <= bounds[1]:
            raise problem(f"must be {expected}, not {shown(value)}")
        return value
    if annotation == "float":
        low, high = bounds or (0.0, math.inf)
        expected = f"a finite number between {low:g} and {high:g}"
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong(expected)
        if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
            raise problem(f"must be {expected}, not {shown(value)}")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            raise wrong("text")
        reason = (
            None
            if _allows_empty(spec, value)
            else _text_problem(value, spec.metadata.get("max_length", MAX_TEXT))
        )
        if reason:
            raise problem(reason)
        return value
    if annotation.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of text")
        if len(value) > MAX_MATCH_RULES:
            raise problem(f"at most {MAX_MATCH_RULES} rules, not {len(value)}")
        for index, item in enumerate(value):
            reason = _text_problem(item, MAX_TEXT)
            if reason:
                raise ConfigError(source, f"{key}[{index}]: {reason}")
        return tuple(value)
    raise wrong(annotation)  # pragma: no cover  (every annotation above is handled)


def parse_config(raw: Mapping[str, Any], source: str, *, check_folders: bool = True) -> AgentConfig:
    """Every key checked; with ``check_folders`` the configured paths are looked at too (``stat``
    only: nothing is opened or created)."""
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            source, f"{_name(sorted(unknown)[0])}: unknown section (known: {', '.join(SECTIONS)})"
        )
    paths: PathsConfig = _section(raw, source, "paths", PathsConfig)
    scan: ScanConfig = _section(raw, source, "scan", ScanConfig)
    devices: DevicesConfig = _section(raw, source, "devices", DevicesConfig)
    lights: LightsConfig = _section(raw, source, "lights", LightsConfig)
    filter_settings: FiltersConfig = _section(raw, source, "filters", FiltersConfig)
    blocks: BlocksConfig = _section(raw, source, "blocks", BlocksConfig)
    exhibit: ExhibitConfig = _section(raw, source, "exhibit", ExhibitConfig)
    kiosk: KioskConfig = _section(raw, source, "kiosk", KioskConfig)
    if scan.mode not in MODES:
        raise ConfigError(source, f"scan.mode: must be one of {', '.join(MODES)}, not {shown(scan.mode)}")
    if lights.board_revision and not re.fullmatch(r"[0-9a-fA-F]{4,8}", lights.board_revision):
        expected = "a Raspberry Pi revision code in hex (c03114)"
        raise ConfigError(
            source, f"lights.board_revision: must be {expected}, not {shown(lights.board_revision)}"
        )
    if lights.backend not in LIGHT_BACKENDS:
        raise ConfigError(
            source, f"lights.backend: must be one of {', '.join(LIGHT_BACKENDS)}, not {shown(lights.backend)}"
        )
    if not devices.match:
        raise ConfigError(
            source, "devices.match: must list at least one rule (none would take every disk but the system's)"
        )
    for index, rule in enumerate(devices.match):
        try:
            parse_rule(rule)
        except UsageError as err:
            raise ConfigError(source, f"devices.match[{index}]: {err}") from err
    for index, rule in enumerate(exhibit.scanner):
        try:
            parse_rule(rule)
        except UsageError as err:
            raise ConfigError(source, f"exhibit.scanner[{index}]: {err}") from err
    bays = _bays(
        raw.get("bays", []), source, {} if lights.button is None else {lights.button: "lights.button"}
    )
    _check_paths(paths, source, look=check_folders)
    config = AgentConfig(
        paths, scan, devices, lights, bays, source, filters=filter_settings, exhibit=exhibit, kiosk=kiosk
    )
    return replace(config, blocks=blocks)


def _pseudo_filesystem(text: str) -> str | None:
    """The kernel file system (``/proc``, ``/sys``, ``/dev``) ``text`` is under, if any."""
    try:
        normal = os.path.normpath(os.path.abspath(text))
    except OSError:  # a relative path, and the working folder was removed
        normal = os.path.normpath(text)
    return next((top for top in PSEUDO_FILESYSTEMS if normal == top or normal.startswith(top + "/")), None)


def _real(path: Path) -> str:
    """``path`` with its symbolic links followed (as given when the working folder is gone)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return str(path)


def _check_paths(paths: PathsConfig, source: str, *, look: bool) -> None:
    """Files where files belong and folders where folders do; with ``look`` the disk is asked too."""
    # the device key is only used (and made) with a station key: an encrypted journal
    files = {"device_key": paths.device_key} if paths.station_key is not None else {}
    files |= {key: getattr(paths, key) for key in ("station_key", "station_signing_key")}
    configured = {key: getattr(paths, key) for key in FOLDER_KEYS} | {"device_key": paths.device_key} | files
    for key, path in configured.items():
        if path is None:
            continue
        top = _pseudo_filesystem(str(path))
        if top is None and look and key in (*FOLDER_KEYS, *files):
            top = _pseudo_filesystem(_real(path))
        if top is not None:
            where = f"{printable(str(path))} is under {top}: a kernel file system, not for the kiosk's files"
            raise ConfigError(source, f"paths.{key}: {where}")
    if paths.device_key.suffix != ".key":
        raise ConfigError(
            source, "paths.device_key: the file name must end in .key (its .pub goes next to it)"
        )
    if not look:
        return
    for key in FOLDER_KEYS:
        reason = _path_problem(getattr(paths, key), folder=True, must_exist=key in ("filters", "trust"))
        if reason:
            raise ConfigError(source, f"paths.{key}: {reason}")
    for key, path in files.items():
        if path is not None:
            reason = _path_problem(path, folder=False, must_exist=key != "device_key")
            if reason:
                raise ConfigError(source, f"paths.{key}: {reason}")
    if "device_key" in files and _real(paths.device_key.parent) == _real(paths.trust):
        raise ConfigError(
            source, "paths.device_key: must not be in paths.trust (its .pub would be trusted to sign filters)"
        )


def _path_problem(path: Path, *, folder: bool, must_exist: bool) -> str | None:
    """Why ``path`` cannot be the folder (or regular file) it should be; None when it can (``stat``
    only: a FIFO is never opened)."""
    text = printable(str(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if must_exist:
            return f"{'folder ' if folder else ''}{text} does not exist"
        return None  # made at start
    except NotADirectoryError:
        for parent in reversed(path.parents):
            try:
                mode = os.stat(parent).st_mode
            except OSError:
                break
            if not stat.S_ISDIR(mode):
                return f"{text} is below {printable(str(parent))}, a {file_kind(mode)}, not a folder"
        return f"{text} is below something that is not a folder"
    except OSError as err:
        return f"{text}: cannot be reached: {err.strerror}"
    if folder and not stat.S_ISDIR(st.st_mode):
        return f"{text} is a {file_kind(st.st_mode)}, not a folder"
    if not folder and not stat.S_ISREG(st.st_mode):
        return f"{text} is not a regular file ({file_kind(st.st_mode)})"
    return None


def _bays(raw_bays: Any, source: str, claimed: Mapping[int, str]) -> tuple[BayConfig, ...]:
    """The bays, each GPIO used once (``claimed``: pins other keys use, with those keys)."""
    if not isinstance(raw_bays, list) or not raw_bays:
        raise ConfigError(source, "bays: at least one [[bays]] table is needed (name, red, amber, green)")
    bays: list[BayConfig] = []
    pins: dict[int, str] = dict(claimed)
    for index, values in enumerate(raw_bays):
        where = f"bays[{index}]"
        if not isinstance(values, dict):
            raise ConfigError(source, f"{where}: must be a table")
        bay: BayConfig = _build(BayConfig, values, source, where)
        if any(other.name == bay.name for other in bays):
            raise ConfigError(source, f"{where}.name: bay name {shown(bay.name)} used twice")
        # "*" (every port) may repeat: the first free bay takes a device; the same port glob twice is
        # a copy-and-paste slip that lights one bay for a device plugged into the other's socket
        twin = next((i for i, other in enumerate(bays) if other.port == bay.port != "*"), None)
        if twin is not None:
            raise ConfigError(
                source,
                f"{where}.port: {shown(bay.port)} is also bays[{twin}].port (each socket its own glob)",
            )
        for role in ("red", "amber", "green", "buzzer", "button"):
            pin = getattr(bay, role)
            if pin is None:
                continue
            if pin not in GPIO_PINS:
                raise ConfigError(source, f"{where}.{role}: GPIO {shown(pin)} does not exist (0-27)")
            if pin in pins:
                raise ConfigError(source, f"{where}.{role}: GPIO {pin} is already {pins[pin]}")
            pins[pin] = f"{where}.{role}"
        bays.append(bay)
    return tuple(bays)
