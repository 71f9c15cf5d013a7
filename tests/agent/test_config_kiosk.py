"""The kiosk's name and location (``[kiosk]``) and the acknowledge buttons (``[lights] button``,
``[[bays]] button``), issue 14 items 11 and 3: each refusal one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import MAX_KIOSK_LOCATION, MAX_KIOSK_NAME, load_config, parse_config
from filters.errors import ConfigError

BAY = {"name": "front", "red": 17, "amber": 27, "green": 22}


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "agent.toml", check_folders=False)
    message = str(caught.value)
    assert message.startswith("agent.toml: ") and "\n" not in message
    return message


def test_name_location_and_buttons_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[kiosk]\nname = "Phnom Penh CPU bay 2"\nlocation = "CPU office, floor 2, Büro 3"\n'
        '[lights]\nbackend = "mock"\nbutton = 26\n'
        '[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\nbuzzer = 18\nbutton = 23\n'
        '[[bays]]\nname = "back"\nred = 5\namber = 6\ngreen = 13\n'
    )
    config = load_config(path, check_folders=False)
    assert (config.kiosk.name, config.kiosk.location) == (
        "Phnom Penh CPU bay 2",
        "CPU office, floor 2, Büro 3",
    )
    assert config.lights.button == 26
    assert [b.button for b in config.bays] == [23, None]


def test_defaults_set_nothing() -> None:
    config = parse_config({"bays": [BAY]}, "agent.toml", check_folders=False)
    assert (config.kiosk.name, config.kiosk.location) == ("", "")
    assert config.lights.button is None and config.bays[0].button is None
    assert (
        parse_config(
            {"bays": [BAY], "kiosk": {"name": "", "location": "x"}}, "a", check_folders=False
        ).kiosk.name
        == ""
    )


@pytest.mark.parametrize(
    ("kiosk", "reason"),
    [
        ({"name": "Bay\n2"}, "kiosk.name: must not contain control characters ('\\n' at 3)"),
        ({"name": "Bay\u202e2"}, "kiosk.name: must not contain characters that do not print"),
        (
            {"name": "x" * (MAX_KIOSK_NAME + 1)},
            f"kiosk.name: too long (65 characters, at most {MAX_KIOSK_NAME})",
        ),
        (
            {"location": "y" * (MAX_KIOSK_LOCATION + 1)},
            f"kiosk.location: too long (129 characters, at most {MAX_KIOSK_LOCATION})",
        ),
        ({"name": "   "}, "kiosk.name: must not be empty"),
        ({"name": 7}, "kiosk.name: must be text, not int 7"),
        ({"location": "a\0b"}, "kiosk.location: must not contain a NUL byte"),
        ({"id": "x"}, "kiosk.id: unknown key (known: name, location)"),
    ],
)
def test_kiosk_refusals(kiosk: dict[str, Any], reason: str) -> None:
    assert reason in refused({"bays": [BAY], "kiosk": kiosk})


def test_a_kiosk_that_is_not_a_table() -> None:
    assert "[kiosk] must be a table" in refused({"bays": [BAY], "kiosk": "bay 2"})


def test_the_longest_name_and_location_are_taken() -> None:
    raw = {"bays": [BAY], "kiosk": {"name": "n" * MAX_KIOSK_NAME, "location": "l" * MAX_KIOSK_LOCATION}}
    config = parse_config(raw, "agent.toml", check_folders=False)
    assert len(config.kiosk.name) == 64 and len(config.kiosk.location) == 128


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"bays": [{**BAY, "button": 40}]}, "bays[0].button: GPIO 40 does not exist (0-27)"),
        ({"bays": [{**BAY, "button": 17}]}, "bays[0].button: GPIO 17 is already bays[0].red"),
        ({"bays": [{**BAY, "button": "23"}]}, "bays[0].button: must be a whole number"),
        (
            {"bays": [BAY], "lights": {"button": 28}},
            "lights.button: must be a whole number from 0 to 27, not 28",
        ),
        ({"bays": [BAY], "lights": {"button": 22}}, "bays[0].green: GPIO 22 is already lights.button"),
        (
            {"bays": [{**BAY, "button": 26}], "lights": {"button": 26}},
            "bays[0].button: GPIO 26 is already lights.button",
        ),
        (
            {"bays": [{**BAY, "buzzer": 23, "button": 23}]},
            "bays[0].button: GPIO 23 is already bays[0].buzzer",
        ),
    ],
)
def test_button_refusals(raw: dict[str, Any], reason: str) -> None:
    assert reason in refused(raw)
