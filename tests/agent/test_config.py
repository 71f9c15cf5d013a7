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
        ({"bays": [BAY], "devices": {"match": ["ID_BUS"]}}, "devices.match:"),
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
