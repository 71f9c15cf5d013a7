"""The kiosk's configuration: TOML, validated whole at start (docs/operations.md lists every key).

Unknown keys, wrong types, bad values, missing folders and pin clashes are refused with one line
naming the file and the key. Example::

    >>> config = parse_config({"bays": [{"name": "front", "red": 17, "amber": 27, "green": 22}],
    ...                        "lights": {"backend": "mock"}}, "agent.toml", check_folders=False)
    >>> config.bays[0].port, config.scan.mode, config.devices.match
    ('*', 'auto', ('ID_BUS=usb',))
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from agent.devices.selection import DEFAULT_RULES, parse_rule
from filters.errors import ConfigError, UsageError

MODES = ("auto", "quick", "full")
LIGHT_BACKENDS = ("gpio", "mock", "terminal", "none")


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
    workers: int = 0


@dataclass(frozen=True)
class DevicesConfig:
    match: tuple[str, ...] = DEFAULT_RULES
    settle_seconds: float = 0.4


@dataclass(frozen=True)
class LightsConfig:
    backend: str = "gpio"
    active_high: bool = True


@dataclass(frozen=True)
class BayConfig:
    name: str
    red: int
    amber: int
    green: int
    port: str = "*"
    buzzer: int | None = None


@dataclass(frozen=True)
class AgentConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    lights: LightsConfig = field(default_factory=LightsConfig)
    bays: tuple[BayConfig, ...] = ()
    source: str = "<defaults>"


def load_config(path: str | Path, *, check_folders: bool = True) -> AgentConfig:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise ConfigError(path, f"cannot read: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, f"not valid TOML: {err}") from err
    return parse_config(raw, str(path), check_folders=check_folders)


def _section(raw: Mapping[str, Any], source: str, name: str, kind: type[Any]) -> Any:
    values = raw.get(name, {})
    if not isinstance(values, dict):
        raise ConfigError(source, f"[{name}] must be a table")
    return _build(kind, values, source, name)


def _build(kind: type[Any], values: Mapping[str, Any], source: str, where: str) -> Any:
    known = {f.name: f for f in fields(kind)}
    for key in values:
        if key not in known:
            raise ConfigError(source, f"{where}.{key}: unknown key (known: {', '.join(known)})")
    converted: dict[str, Any] = {}
    for key, value in values.items():
        converted[key] = _convert(value, str(known[key].type), source, f"{where}.{key}")
    try:
        return kind(**converted)
    except TypeError as err:
        missing = [
            n
            for n, f in known.items()
            if n not in values and f.default is MISSING and f.default_factory is MISSING
        ]
        raise ConfigError(source, f"{where}: missing key {missing[0] if missing else err}") from err


def _convert(value: Any, annotation: str, source: str, key: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(source, f"{key}: must be {expected}, not {type(value).__name__} {value!r}")

    if annotation.startswith("Path"):
        if not isinstance(value, str) or not value:
            raise wrong("a path (text)")
        return Path(value)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if annotation.startswith("int"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise wrong("a whole number >= 0")
        return value
    if annotation == "float":
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise wrong("a number >= 0")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            raise wrong("text")
        return value
    if annotation.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of text")
        return tuple(value)
    raise wrong(annotation)  # pragma: no cover  (every annotation above is handled)


def parse_config(raw: Mapping[str, Any], source: str, *, check_folders: bool = True) -> AgentConfig:
    unknown = set(raw) - {"paths", "scan", "devices", "lights", "bays"}
    if unknown:
        raise ConfigError(
            source, f"{sorted(unknown)[0]}: unknown section (known: paths, scan, devices, lights, bays)"
        )
    paths: PathsConfig = _section(raw, source, "paths", PathsConfig)
    scan: ScanConfig = _section(raw, source, "scan", ScanConfig)
    devices: DevicesConfig = _section(raw, source, "devices", DevicesConfig)
    lights: LightsConfig = _section(raw, source, "lights", LightsConfig)
    if scan.mode not in MODES:
        raise ConfigError(source, f"scan.mode: must be one of {', '.join(MODES)}, not {scan.mode!r}")
    if lights.backend not in LIGHT_BACKENDS:
        raise ConfigError(source, f"lights.backend: must be one of {', '.join(LIGHT_BACKENDS)}")
    for rule in devices.match:
        try:
            parse_rule(rule)
        except UsageError as err:
            raise ConfigError(source, f"devices.match: {err}") from err
    bays = _bays(raw.get("bays", []), source)
    if check_folders:
        for key in ("filters", "trust"):
            folder = getattr(paths, key)
            if not folder.is_dir():
                raise ConfigError(source, f"paths.{key}: folder {folder} does not exist")
    return AgentConfig(paths, scan, devices, lights, bays, source)


def _bays(raw_bays: Any, source: str) -> tuple[BayConfig, ...]:
    if not isinstance(raw_bays, list) or not raw_bays:
        raise ConfigError(source, "bays: at least one [[bays]] table is needed (name, red, amber, green)")
    bays: list[BayConfig] = []
    pins: dict[int, str] = {}
    for index, values in enumerate(raw_bays):
        where = f"bays[{index}]"
        if not isinstance(values, dict):
            raise ConfigError(source, f"{where}: must be a table")
        bay: BayConfig = _build(BayConfig, values, source, where)
        if any(other.name == bay.name for other in bays):
            raise ConfigError(source, f"{where}.name: bay name {bay.name!r} used twice")
        for role in ("red", "amber", "green", "buzzer"):
            pin = getattr(bay, role)
            if pin is None:
                continue
            if pin > 27:
                raise ConfigError(source, f"{where}.{role}: GPIO {pin} does not exist (0-27)")
            if pin in pins:
                raise ConfigError(source, f"{where}.{role}: GPIO {pin} is already {pins[pin]}")
            pins[pin] = f"{where}.{role}"
        bays.append(bay)
    return tuple(bays)
