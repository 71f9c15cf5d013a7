"""Configuration: every refusal is one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config, parse_config
from filters.errors import ConfigError

BAY = {"name": "front", "red": 17, "amber": 27, "green": 22}


def refused(raw: dict[str, Any], *, check_folders: bool = False) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "agent.toml", check_folders=check_folders)
    message = str(caught.value)
    assert message.startswith("agent.toml: ") and "\n" not in message
    return message


def test_defaults_and_a_full_config(tmp_path: Path) -> None:
    (tmp_path / "filters").mkdir()
    (tmp_path / "trust").mkdir()
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[paths]\nfilters = "{tmp_path}/filters"\ntrust = "{tmp_path}/trust"\n'
        '[scan]\nmode = "full"\nstop_at_first_priority = true\nworkers = 2\n'
        '[devices]\nmatch = ["ID_BUS=usb", "ID_MODEL!=Kiosk*"]\nsettle_seconds = 0.5\n'
        '[lights]\nbackend = "mock"\nactive_high = false\n'
        '[[bays]]\nname = "front"\nport = "platform-*-usb-0:1*"\n'
        "red = 17\namber = 27\ngreen = 22\nbuzzer = 23\n"
        '[[bays]]\nname = "back"\nred = 5\namber = 6\ngreen = 13\n'
    )
    config = load_config(path)
    assert config.scan.mode == "full" and config.scan.workers == 2
    assert config.lights.active_high is False
    assert [b.name for b in config.bays] == ["front", "back"]
    assert config.bays[0].buzzer == 23 and config.bays[1].buzzer is None
    assert config.paths.runtime == Path("/run/fieldtriage")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"bays": [BAY], "scan": {"mode": "fast"}}, "scan.mode: must be one of auto, quick, full"),
        ({"bays": [BAY], "scan": {"speed": 1}}, "scan.speed: unknown key"),
        ({"bays": [BAY], "extra": {}}, "extra: unknown section"),
        ({"bays": [BAY], "scan": {"workers": "2"}}, "scan.workers: must be a whole number"),
        (
            {"bays": [BAY], "scan": {"stop_at_first_priority": 1}},
            "scan.stop_at_first_priority: must be true or false",
        ),
        ({"bays": [BAY], "lights": {"backend": "lasers"}}, "lights.backend: must be one of"),
        ({"bays": [BAY], "devices": {"match": ["ID_BUS"]}}, "devices.match[0]: ID_BUS: a match rule is"),
        ({"bays": []}, "bays: at least one"),
        ({"bays": [{"name": "a", "red": 1, "amber": 2}]}, "bays[0]: missing key green"),
        (
            {"bays": [BAY, {**BAY, "name": "b", "red": 5, "amber": 6}]},
            "bays[1].green: GPIO 22 is already bays[0].green",
        ),
        ({"bays": [BAY, dict(BAY)]}, "bays[1].name: bay name 'front' used twice"),
        ({"bays": [{**BAY, "buzzer": 40}]}, "bays[0].buzzer: GPIO 40 does not exist"),
        ({"bays": [BAY], "paths": "x"}, "[paths] must be a table"),
    ],
)
def test_refusals(raw: dict[str, Any], reason: str) -> None:
    assert reason in refused(raw)


def test_missing_folders_and_bad_files(tmp_path: Path) -> None:
    reason = refused({"bays": [BAY], "paths": {"filters": str(tmp_path / "nope")}}, check_folders=True)
    assert "paths.filters: folder" in reason and "does not exist" in reason
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan\nmode=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            {"bays": [BAY], "lights": {"backend": "lasers"}},
            "lights.backend: must be one of gpio, mock, terminal, none, not 'lasers'",
        ),
        (
            {"bays": [BAY], "scan": {"workers": -1}},
            "scan.workers: must be a whole number from 0 to 64, not -1",
        ),
        (
            {"bays": [BAY], "scan": {"workers": 65}},
            "scan.workers: must be a whole number from 0 to 64, not 65",
        ),
        (
            {"bays": [BAY], "scan": {"workers": 16**4000}},
            "scan.workers: must be a whole number from 0 to 64, not a 16001-bit number",
        ),
        (
            {"bays": [BAY], "scan": {"workers": True}},
            "scan.workers: must be a whole number from 0 to 64, not bool True",
        ),
        (
            {"bays": [BAY], "devices": {"settle_seconds": -0.5}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not -0.5",
        ),
        ({"bays": [BAY], "devices": {"settle_seconds": float("-inf")}}, "between 0 and 60, not -inf"),
        (
            {"bays": [BAY], "devices": {"settle_seconds": "1"}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not str '1'",
        ),
        ({"bays": [BAY], "devices": {"match": "ID_BUS=usb"}}, "devices.match: must be a list of text"),
        (
            {"bays": [BAY], "devices": {"match": ["ID_BUS=usb"] * 33}},
            "devices.match: at most 32 rules, not 33",
        ),
        (
            {"bays": [BAY], "devices": {"match": ["ID_BUS=" + "u" * 300]}},
            "devices.match[0]: too long (307 characters, at most 256)",
        ),
        (
            {"bays": [BAY], "devices": {"match": ["ID_BUS=usb\n"]}},
            "devices.match[0]: must not contain control characters",
        ),
        (
            {"bays": [BAY], "scan": {"mode": "x" * 10_000}},
            "scan.mode: too long (10000 characters, at most 256)",
        ),
        ({"bays": [{**BAY, "port": ""}]}, "bays[0].port: must not be empty"),
        ({"bays": [{**BAY, "port": "usb-0:1\t"}]}, "bays[0].port: must not contain control characters"),
        ({"bays": [{**BAY, "port": "p" * 300}]}, "bays[0].port: too long (300 characters, at most 256)"),
        (
            {
                "bays": [
                    {**BAY, "port": "usb-0:1*"},
                    {"name": "b", "red": 5, "amber": 6, "green": 13, "port": "usb-0:1*"},
                ]
            },
            "bays[1].port: 'usb-0:1*' is also bays[0].port",
        ),
        ({"bays": [{**BAY, "name": 7}]}, "bays[0].name: must be text, not int 7"),
        ({"bays": [{**BAY, "red": -1}]}, "bays[0].red: GPIO -1 does not exist (0-27)"),
        ({"bays": [{**BAY, "red": 17.0}]}, "bays[0].red: must be a whole number, not float 17.0"),
        ({"bays": [{**BAY, "red": 2**70}]}, "bays[0].red: GPIO 1180591620717411303424 does not exist (0-27)"),
        ({"bays": [{**BAY, "buzzer": 17}]}, "bays[0].buzzer: GPIO 17 is already bays[0].red"),
        ({"bays": [BAY] * 10}, "bays[1].name: bay name 'front' used twice"),
        ({"bays": {"name": "front"}}, "bays: at least one [[bays]] table is needed"),
        ({"bays": [BAY, 3]}, "bays[1]: must be a table"),
        (
            {"bays": [BAY], "paths": {"device_key": "/var/lib/fieldtriage/device.pem"}},
            "paths.device_key: the file name must end in .key",
        ),
        ({"bays": [BAY], "paths": {"journal": ""}}, "paths.journal: must be a path (text), not str ''"),
        (
            {"bays": [BAY], "paths": {"journal": "/x/" * 2000}},
            "paths.journal: too long (6000 characters, at most 4096)",
        ),
        (
            {"bays": [BAY], "paths": {"journal": "/var/lib/j\nournal"}},
            "paths.journal: must not contain control characters",
        ),
        ({"bays": [BAY], "pa\x1bths": {}}, "pa\\x1bths: unknown section"),
        (
            {"bays": [BAY], "lights": {"gpio_chip": 64}},
            "lights.gpio_chip: must be a whole number from 0 to 63",
        ),
        ({"bays": [BAY], "lights": {"gpio_chip": "0"}}, "lights.gpio_chip: must be a whole number"),
        (
            {"bays": [BAY], "lights": {"board_revision": "pi4"}},
            "lights.board_revision: must be a Raspberry Pi",
        ),
        ({"bays": [BAY], "lights": {"board_revision": "c0311\n"}}, "lights.board_revision: must not contain"),
        ({"bays": [BAY], "scan": {"x" * 500: 1}}, "scan." + "x" * 40 + "...: unknown key"),
    ],
)
def test_more_refusals(raw: dict[str, Any], reason: str) -> None:
    message = refused(raw)
    assert reason in message, message
    assert len(message) < 400, message


def test_values_are_shown_short_in_refusals() -> None:
    message = refused({"bays": [BAY], "scan": {"workers": "9" * 100_000}})
    assert "scan.workers: must be a whole number from 0 to 64, not str '99999" in message
    assert len(message) < 200, message


def test_the_device_key_is_not_put_in_the_trust_folder(tmp_path: Path) -> None:
    (tmp_path / "filters").mkdir()
    (tmp_path / "trust").mkdir()
    (tmp_path / "station.pub").write_text("x")
    raw = {
        "bays": [BAY],
        "paths": {
            "filters": str(tmp_path / "filters"),
            "trust": str(tmp_path / "trust"),
            "runtime": str(tmp_path / "run"),
            "journal": str(tmp_path / "journal"),
            "device_key": str(tmp_path / "trust" / "device.key"),
            "station_key": str(tmp_path / "station.pub"),
        },
    }
    reason = refused(raw, check_folders=True)
    assert (
        "paths.device_key: must not be in paths.trust (its .pub would be trusted to sign filters)" in reason
    )


def test_ports_may_repeat_the_default_glob() -> None:
    second = {"name": "back", "red": 5, "amber": 6, "green": 13}
    config = parse_config(
        {"bays": [BAY, second], "lights": {"backend": "none"}}, "agent.toml", check_folders=False
    )
    assert [b.port for b in config.bays] == ["*", "*"]


def test_limits_are_accepted() -> None:
    config = parse_config(
        {
            "bays": [{**BAY, "name": "n" * 32, "port": "p" * 256}],
            "scan": {"workers": 64},
            "devices": {"settle_seconds": 60, "match": ["ID_BUS=usb"] * 32},
        },
        "agent.toml",
        check_folders=False,
    )
    assert config.devices.settle_seconds == 60.0 and isinstance(config.devices.settle_seconds, float)
    assert config.scan.workers == 64 and config.bays[0].name == "n" * 32


def test_relative_paths_from_a_removed_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    config = parse_config({"bays": [BAY], "paths": {"runtime": "run"}}, "agent.toml", check_folders=False)
    assert config.paths.runtime == Path("run")
    (tmp_path / "filters").mkdir()
    (tmp_path / "trust").mkdir()
    folders = {"filters": str(tmp_path / "filters"), "trust": str(tmp_path / "trust")}
    config = parse_config({"bays": [BAY], "paths": {"runtime": "run", **folders}}, "agent.toml")
    assert config.paths.runtime == Path("run")


def test_a_gpio_chip_and_board_revision() -> None:
    config = parse_config(
        {"bays": [BAY], "lights": {"gpio_chip": 0, "board_revision": "c03114"}},
        "agent.toml",
        check_folders=False,
    )
    assert (config.lights.gpio_chip, config.lights.board_revision) == (0, "c03114")
    assert parse_config({"bays": [BAY]}, "agent.toml", check_folders=False).lights.gpio_chip is None


def test_filter_expiry_warning_days() -> None:
    """filters.expiry_warning_days: 14 by default, 0 (never warn) to 365, whole days."""
    assert parse_config({"bays": [BAY]}, "agent.toml", check_folders=False).filters.expiry_warning_days == 14
    config = parse_config(
        {"bays": [BAY], "filters": {"expiry_warning_days": 0}}, "agent.toml", check_folders=False
    )
    assert config.filters.expiry_warning_days == 0
    assert "filters.expiry_warning_days: must be a whole number from 0 to 365, not 400" in refused(
        {"bays": [BAY], "filters": {"expiry_warning_days": 400}}
    )
    assert "filters.expiry_warning_days: must be a whole number" in refused(
        {"bays": [BAY], "filters": {"expiry_warning_days": 1.5}}
    )
    assert "filters.warn: unknown key (known: expiry_warning_days)" in refused(
        {"bays": [BAY], "filters": {"warn": 1}}
    )
    assert "known: paths, scan, devices, filters, lights, bays" in refused({"bays": [BAY], "extra": {}})
