"""Any value at any key, as an adversary would write it: ``parse_config`` accepts it or refuses it
with one short printable line naming the key, and never raises anything else."""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import BayConfig, DevicesConfig, LightsConfig, PathsConfig, ScanConfig, parse_config
from filters.errors import ConfigError

BAY = {"name": "front", "red": 17, "amber": 27, "green": 22}
SECTIONS = {"paths": PathsConfig, "scan": ScanConfig, "devices": DevicesConfig, "lights": LightsConfig}

scalars = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**5000), max_value=2**5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(),
    st.text(alphabet="/\0\n\x1b.abc ", max_size=30),
    st.sampled_from(["/proc/x", "/sys", "/dev/null", "/etc/passwd", "/etc/passwd/x", "", " ", "*", "gpio"]),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.just(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
keys = st.one_of(
    st.sampled_from([f"{name}.{f.name}" for name, kind in SECTIONS.items() for f in fields(kind)]),
    st.sampled_from([f"bays.{f.name}" for f in fields(BayConfig)]),
    st.text(max_size=12).map(lambda k: f"scan.{k}"),
)


def check(raw: dict[str, Any], check_folders: bool) -> None:
    try:
        parse_config(raw, "agent.toml", check_folders=check_folders)
    except ConfigError as err:
        message = str(err)
        assert message.startswith("agent.toml: "), message
        assert message.isprintable(), message
        assert len(message) < 5000, message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, min_size=1, max_size=3), st.booleans())
def test_any_value_at_any_key(assignments: dict[str, Any], check_folders: bool) -> None:
    raw: dict[str, Any] = {"bays": [dict(BAY)], "lights": {"backend": "none"}}
    for dotted, value in assignments.items():
        section, key = dotted.split(".", 1)
        if section == "bays":
            raw["bays"][0][key] = value
        else:
            raw.setdefault(section, {})[key] = value
    check(raw, check_folders)


@settings(max_examples=200, deadline=None)
@given(values, st.booleans())
def test_any_value_as_a_section_or_as_the_bays(value: Any, check_folders: bool) -> None:
    check({"bays": value}, check_folders)
    check({"bays": [BAY], "paths": value}, check_folders)
    check({"bays": [value]}, check_folders)
