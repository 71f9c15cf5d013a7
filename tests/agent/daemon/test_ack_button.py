"""The acknowledge button in the daemon (issue 14, item 3) and the kiosk's name and location in its
status (item 11): a priority match (a fake phone holding a known file: no root, no udev) sounds the
alarm; a press on gpiozero's mock pin silences it, the red light stays, and the silencing is
journaled; the kiosk's one button silences whichever bay sounds. Also the wiring ``build_daemon``
uses (``buttons_for``), and ``agent status`` showing the name, the location and a silenced bay."""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import AgentConfig, parse_config
from agent.daemon.cli import buttons_for, lights_for, pin_factory_for
from agent.daemon.main import Daemon
from agent.daemon.provision import provision_kiosk
from agent.daemon.status import format_status, read_status
from agent.devices.mounter import Mounter
from agent.devices.source import FakeDeviceSource
from agent.lights.button import KIOSK_BUTTON, GpioButton
from agent.phones.detect import phone_identity
from agent.phones.fake import FakePhone, FakePhoneBackend
from filters.errors import ConfigError
from tests.agent.daemon.fake_kiosk import ListJournal
from tests.agent.scan.conftest import FilterFactory, write_random

NAME, LOCATION = "Synthetic CPU bay 2", "Synthetic office, floor 9"
FRONT = {"name": "front", "red": 5, "amber": 6, "green": 13, "buzzer": 19, "port": "*-usb-0:1:*"}
BACK = {"name": "back", "red": 17, "amber": 27, "green": 22, "buzzer": 18, "port": "*-usb-0:2:*"}
PROPERTIES = {"ID_VENDOR_ID": "18d1", "ID_MODEL_ID": "4ee1", "ID_VENDOR": "Google", "ID_MODEL": "Pixel_7",
              "ID_USB_INTERFACES": ":060101:", "BUSNUM": "001", "DEVNUM": "007"}  # fmt: skip


def wait(condition: Callable[[], Any], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


class Kiosk:
    def __init__(self, tmp_path: Path, bays: list[dict[str, Any]], lights: dict[str, Any]) -> None:
        known = write_random(tmp_path / "known.jpg", 100_000, 11)
        factory = FilterFactory(tmp_path / "made")
        for name in ("filters", "trust", "run", "journal"):
            (tmp_path / name).mkdir()
        shutil.copy(factory.path([known]), tmp_path / "filters" / "lab.ftf")
        shutil.copy(factory.pub_path, tmp_path / "trust" / "lab.pub")
        self.config = parse_config(
            {
                "paths": {n: str(tmp_path / n) for n in ("filters", "trust", "journal")}
                | {"runtime": str(tmp_path / "run")},
                "lights": {"backend": "mock", **lights},
                "kiosk": {"name": NAME, "location": LOCATION},
                "bays": bays,
            },
            "test.toml",
        )
        self.phone = FakePhone(
            {
                "Internal shared storage": {
                    "DCIM/a.jpg": random.Random(1).randbytes(9000),
                    "DCIM/k.jpg": known.read_bytes(),
                }
            }
        )
        self.pins = MockFactory()
        self.source = FakeDeviceSource()
        self.journal = ListJournal()
        self.daemon = Daemon(
            self.config, source=self.source, mounter=Mounter(tmp_path / "run"),
            lights=lights_for(self.config, self.pins), journal=self.journal,
            phones=FakePhoneBackend({"usb:001,007": self.phone}), buttons=buttons_for(self.config, self.pins),
        )  # fmt: skip
        self.status_path = tmp_path / "run" / "status.json"
        self.thread = threading.Thread(target=self.daemon.run, kwargs={"install_signals": False}, daemon=True)

    def bay(self, name: str) -> Any:
        return next(b for b in self.daemon.bays if b.name == name)

    def priority_match(self, port: int = 1) -> Any:
        identity = phone_identity(
            PROPERTIES, f"pci-0000:00:14.0-usb-0:{port}:1.0", f"/devices/pci/usb1/1-{port}"
        )
        self.source.plug(identity)
        bay = self.bay("front" if port == 1 else "back")
        wait(lambda: bay.verdict == "priority_match")
        return bay

    def press(self, pin: int) -> None:
        self.pins.pin(pin).drive_low()
        self.pins.pin(pin).drive_high()

    def silenced(self) -> list[dict[str, Any]]:
        return [r for r in self.journal.records if r["type"] == "alarm_silenced"]


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Callable[..., Kiosk]]:
    made: list[Kiosk] = []

    def make(bays: list[dict[str, Any]], lights: dict[str, Any] | None = None) -> Kiosk:
        kiosk = Kiosk(tmp_path, bays, lights or {})
        kiosk.thread.start()
        wait(lambda: kiosk.daemon.state == "running")
        made.append(kiosk)
        return kiosk

    yield make
    for kiosk in made:
        kiosk.daemon.request_stop()
        kiosk.thread.join(10)
        kiosk.source.close()
        assert not kiosk.thread.is_alive()


def test_the_bays_button_silences_its_priority_alarm_and_the_red_stays(kiosk: Callable[..., Kiosk]) -> None:
    k = kiosk([FRONT | {"button": 26}])
    bay = k.priority_match()
    buzzer, red = k.pins.pin(FRONT["buzzer"]), k.pins.pin(FRONT["red"])
    wait(lambda: buzzer.state)  # the alarm: a burst of beeps every 1.5 s
    k.press(26)
    (record,) = wait(k.silenced)
    assert record | {"at": "", "device": {}} == {
        "type": "alarm_silenced", "bay": "front", "signal": "priority_match", "at": "", "button": "bay",
        "device": {},
    }  # fmt: skip
    assert record["at"].endswith("Z") and record["device"]["vendor_id"] == "18d1"
    mark = len(buzzer.states)
    time.sleep(2.0)  # more than one cycle of the alarm
    assert not any(state.state for state in buzzer.states[mark:]) and not buzzer.state
    assert red.state and bay.lights.signal.value == "priority_match", "the lights stay as they were"
    k.press(26)  # nothing sounds any more: nothing to silence, nothing journaled
    time.sleep(0.3)
    assert len(k.silenced()) == 1
    status = wait(lambda: (s := read_status(k.status_path))["bays"][0]["silenced"] and s)
    assert status["kiosk"] == {"name": NAME, "location": LOCATION}
    text = format_status(status)
    assert f"kiosk: {NAME} ({LOCATION})" in text.splitlines()[1]
    assert "verdict priority_match  (alarm silenced)" in text


def test_the_kiosks_button_silences_whichever_bay_sounds(kiosk: Callable[..., Kiosk]) -> None:
    k = kiosk([FRONT, BACK], {"button": 26})
    assert set(k.daemon.buttons) == {KIOSK_BUTTON}
    k.press(26)  # nothing sounds yet
    time.sleep(0.3)
    assert k.silenced() == []
    k.priority_match(port=2)
    wait(lambda: k.pins.pin(BACK["buzzer"]).state)
    k.press(26)
    (record,) = wait(k.silenced)
    assert (record["bay"], record["button"], record["signal"]) == ("back", "kiosk", "priority_match")
    assert not k.bay("front").lights.silenced and k.bay("back").lights.silenced


def config(lights: dict[str, Any], bays: list[dict[str, Any]]) -> AgentConfig:
    return parse_config({"lights": lights, "bays": bays}, "test.toml", check_folders=False)


def test_buttons_for_wires_each_configured_pin() -> None:
    pins = MockFactory()
    made = buttons_for(config({"backend": "mock", "button": 26}, [FRONT | {"button": 20}, BACK]), pins)
    assert set(made) == {"front", KIOSK_BUTTON} and all(isinstance(b, GpioButton) for b in made.values())
    assert pins.pin(26).state and pins.pin(20).state, "pulled up"
    for button in made.values():
        button.close()
    assert buttons_for(config({"backend": "mock"}, [FRONT]), pins) == {}
    assert isinstance(pin_factory_for(config({"backend": "mock"}, [FRONT])), MockFactory)
    assert pin_factory_for(config({"backend": "none"}, [FRONT])) is None


def test_a_button_without_gpio_is_left_out_and_said(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert buttons_for(config({"backend": "terminal", "button": 26}, [FRONT | {"button": 20}])) == {}
    assert (
        "bays[0].button, lights.button: no acknowledge button with lights.backend 'terminal'" in caplog.text
    )


def test_a_button_pin_that_cannot_be_claimed_names_its_key() -> None:
    pins = MockFactory()
    taken = GpioButton(20, pin_factory=pins)
    with pytest.raises(ConfigError) as raised:
        buttons_for(config({"backend": "mock", "button": 26}, [FRONT | {"button": 20}]), pins)
    assert str(raised.value).startswith(
        "test.toml: bays[0].button: cannot be used: GPIO 20 (bays[0].button): "
    )
    taken.close()
    GpioButton(26, pin_factory=pins).close()  # the one made before the failure was let go


def test_provision_puts_the_name_and_location_in_the_enrollment_file(tmp_path: Path) -> None:
    enrollment = provision_kiosk(tmp_path / "a" / "device.key", NAME, LOCATION)
    assert (enrollment["name"], enrollment["location"]) == (NAME, LOCATION)
    assert "name" not in provision_kiosk(tmp_path / "b" / "device.key")
    only = provision_kiosk(tmp_path / "c" / "device.key", "", LOCATION)
    assert "name" not in only and only["location"] == LOCATION


def test_agent_status_names_the_kiosk_even_before_it_runs(tmp_path: Path) -> None:
    import json

    from agent.daemon.cli import register
    from tests.agent.journal.helpers import run_cli

    path = tmp_path / "agent.toml"
    path.write_text(
        f'[paths]\nruntime = "{tmp_path}/run"\n[kiosk]\nname = "{NAME}"\nlocation = "{LOCATION}"\n'
        '[lights]\nbackend = "none"\n[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\n'
    )
    status, out, err = run_cli(register, ["agent", "status", "--config", str(path), "--json"])
    assert status == 3 and not err and json.loads(out)["kiosk"] == {"name": NAME, "location": LOCATION}
    status, out, _ = run_cli(register, ["agent", "status", "--config", str(path)])
    assert status == 3 and out.splitlines()[1] == f"kiosk: {NAME} ({LOCATION})", out
