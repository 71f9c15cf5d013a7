"""Bad configuration through the real command: ``fieldtriage agent run --config FILE`` ends with one
line on stderr naming the file and the key, exit status 2, never a traceback and never a hang."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from filters.keys import generate_key_pair

REPO = Path(__file__).resolve().parents[2]
HANG_SECONDS = 15  # a refusal takes well under a second; a daemon that started would run forever
BAY = {"name": "front", "red": 17, "amber": 27, "green": 22}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)  # pragma: no cover


def write_config(root: Path, sections: dict[str, dict[str, Any]], bays: list[dict[str, Any]]) -> Path:
    """``root/agent.toml``: folders under ``root``, test devices only, no lights, then ``sections``."""
    for folder in ("filters", "trust"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    base: dict[str, dict[str, Any]] = {
        "paths": {
            "filters": str(root / "filters"),
            "trust": str(root / "trust"),
            "runtime": str(root / "run"),
            "journal": str(root / "journal"),
            "device_key": str(root / "device.key"),
        },
        "devices": {"match": ["FIELDTRIAGE_TEST=1"], "settle_seconds": 0.1},
        "lights": {"backend": "none"},
    }
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    for bay in bays:
        lines.append("[[bays]]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in bay.items())
    path = root / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_run(config: Path, env: dict[str, str] | None = None) -> str:
    """The one line ``fieldtriage agent run --config CONFIG`` refuses with (asserted: exit 2, no hang)."""
    environment = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"} | (env or {})
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "agent", "run", "--config", str(config)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HANG_SECONDS,
            env=environment,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"still running after {HANG_SECONDS} s: {err.stderr!r}") from None
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"fieldtriage: {config}: "), lines[0]
    return lines[0]


def refusal(
    tmp_path: Path, sections: dict[str, dict[str, Any]], bays: list[dict[str, Any]] | None = None
) -> str:
    return agent_run(write_config(tmp_path / "kiosk", sections, [BAY] if bays is None else bays))


# -- the file itself ------------------------------------------------------------------------------


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    config = write_config(tmp_path, {}, [BAY])
    config.write_bytes(config.read_bytes() + b"# caf\xe9\n")
    assert "not valid UTF-8 at line" in agent_run(config)


def test_a_config_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    os.mkfifo(config)
    assert agent_run(config).endswith("not a regular file (FIFO)")


def test_a_config_that_is_a_folder_or_a_device(tmp_path: Path) -> None:
    assert agent_run(tmp_path).endswith("not a regular file (folder)")
    assert agent_run(Path("/dev/null")).endswith("not a regular file (character device)")


def test_a_multi_megabyte_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, {}, [BAY])
    with config.open("a") as f:
        f.write(("# " + "x" * 1000 + "\n") * 3000)
    assert "too large for a configuration file" in agent_run(config)


@pytest.mark.parametrize(
    "tail",
    [
        "[scan.x]\ny = " + "[" * 5000 + "]" * 5000,  # tomllib recurses: RecursionError
        "[scan]\nworkers = " + "9" * 5000,  # more digits than int() converts: ValueError
    ],
    ids=["nested", "digits"],
)
def test_toml_that_makes_the_parser_raise_something_else(tmp_path: Path, tail: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(tail + "\n")
    assert "not valid TOML" in agent_run(config)


# -- [paths] --------------------------------------------------------------------------------------


def test_folders_that_are_files_or_below_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for key in ("runtime", "journal", "filters", "trust"):
        line = refusal(tmp_path, {"paths": {key: str(a_file)}})
        assert f"paths.{key}: {a_file} is a regular file, not a folder" in line, line
        line = refusal(tmp_path, {"paths": {key: str(a_file / "below")}})
        assert f"paths.{key}: {a_file / 'below'} is below {a_file}, a regular file, not a folder" in line


def test_paths_below_etc_passwd(tmp_path: Path) -> None:
    line = refusal(tmp_path, {"paths": {"journal": "/etc/passwd/x"}})
    assert "paths.journal: /etc/passwd/x is below /etc/passwd, a regular file, not a folder" in line
    assert "paths.runtime: /etc/passwd is a regular file" in refusal(
        tmp_path, {"paths": {"runtime": "/etc/passwd"}}
    )


@pytest.mark.parametrize("key", ["runtime", "filters", "trust", "journal", "device_key", "station_key"])
def test_a_nul_byte_in_a_path(tmp_path: Path, key: str) -> None:
    line = refusal(tmp_path, {"paths": {key: str(tmp_path / "a\0b")}})
    assert f"paths.{key}: must not contain a NUL byte" in line


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("runtime", "/proc/fieldtriage"),
        ("journal", "/sys/fieldtriage"),
        ("filters", "/proc"),
        ("trust", "/proc/self/cwd"),
        ("device_key", "/dev/device.key"),
        ("station_key", "/proc/self/environ"),
        ("station_signing_key", "/sys/kernel/notes"),
    ],
)
def test_paths_under_proc_sys_or_dev(tmp_path: Path, key: str, path: str) -> None:
    line = refusal(tmp_path, {"paths": {key: path}})
    top = "/" + path.split("/")[1]
    assert f"paths.{key}: {path} is under {top}" in line, line


def test_a_folder_reached_through_a_symlink_into_proc(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("/proc/self")
    line = refusal(tmp_path, {"paths": {"trust": str(link)}})
    assert f"paths.trust: {link} is under /proc" in line, line


@pytest.mark.parametrize("key", ["device_key", "station_key", "station_signing_key"])
def test_key_files_that_are_fifos_folders_or_below_a_file(tmp_path: Path, key: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    station = {"station_key": str(keys / "station.pub")} if key == "device_key" else {}
    if station:
        (keys / "station.pub").write_text("x")
    os.mkfifo(keys / "fifo.key")
    line = refusal(tmp_path, {"paths": station | {key: str(keys / "fifo.key")}})
    assert f"paths.{key}: {keys / 'fifo.key'} is not a regular file (FIFO)" in line, line
    (keys / "folder.key").mkdir()
    line = refusal(tmp_path, {"paths": station | {key: str(keys / "folder.key")}})
    assert f"paths.{key}: {keys / 'folder.key'} is not a regular file (folder)" in line, line
    line = refusal(tmp_path, {"paths": station | {key: "/etc/passwd/x.key"}})
    assert f"paths.{key}: /etc/passwd/x.key is below /etc/passwd, a regular file, not a folder" in line


@pytest.mark.parametrize("key", ["station_key", "station_signing_key"])
def test_station_keys_that_do_not_exist(tmp_path: Path, key: str) -> None:
    line = refusal(tmp_path, {"paths": {key: str(tmp_path / "none.pub")}})
    assert f"paths.{key}: {tmp_path / 'none.pub'} does not exist" in line


def test_a_fifo_in_the_trust_folder_does_not_hang_the_start(tmp_path: Path) -> None:
    """Not a refusal (one broken trust file only skips that file): the daemon starts and is stopped."""
    config = write_config(tmp_path, {}, [BAY])
    generate_key_pair(tmp_path / "provider")
    (tmp_path / "provider.pub").rename(tmp_path / "trust" / "provider.pub")
    os.mkfifo(tmp_path / "trust" / "fifo.pub")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "agent", "run", "--config", str(config)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = tmp_path / "run" / "status.json"
        for _ in range(200):
            if status.exists() and json.loads(status.read_text() or "{}").get("state") == "running":
                break
            if agent.poll() is not None:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the daemon did not start with a FIFO in its trust folder")
        problems = json.loads(status.read_text())["filter_problems"]
        assert any("fifo.pub: not a regular file (FIFO)" in p for p in problems), problems
        agent.terminate()
        assert agent.wait(10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


# -- lights ---------------------------------------------------------------------------------------


def gpio_available() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


@pytest.mark.skipif(gpio_available(), reason="this machine has GPIO")
def test_gpio_backend_on_a_machine_without_gpio(tmp_path: Path) -> None:
    line = refusal(tmp_path, {"lights": {"backend": "gpio"}})
    assert "lights.backend: 'gpio' cannot be used: no GPIO pin factory works here (tried lgpio" in line
    assert "native" in line


def test_gpio_backend_with_an_unknown_pin_factory(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"lights": {"backend": "gpio"}}, [BAY])
    line = agent_run(config, env={"GPIOZERO_PIN_FACTORY": "no-such-factory"})
    assert "lights.backend: 'gpio' cannot be used: GPIOZERO_PIN_FACTORY=no-such-factory:" in line, line


# -- numbers, names and lists ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "reason"),
    [
        (
            {"devices": {"settle_seconds": math.nan}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not nan",
        ),
        (
            {"devices": {"settle_seconds": math.inf}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not inf",
        ),
        (
            {"devices": {"settle_seconds": 61}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not 61",
        ),
        (
            {"devices": {"settle_seconds": 10**400}},
            "devices.settle_seconds: must be a finite number between 0 and 60, not a 1329-bit number",
        ),
        (
            {"scan": {"workers": 100_000_000}},
            "scan.workers: must be a whole number from 0 to 64, not 100000000",
        ),
        ({"devices": {"match": []}}, "devices.match: must list at least one rule"),
    ],
)
def test_numbers_and_lists(tmp_path: Path, sections: dict[str, dict[str, Any]], reason: str) -> None:
    line = refusal(tmp_path, sections)
    assert reason in line, line


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "bays[0].name: must not be empty"),
        ("   ", "bays[0].name: must not be empty"),
        ("front\x1b[2J", "bays[0].name: must not contain control characters"),
        ("f" * 200, "bays[0].name: too long (200 characters, at most 32)"),
    ],
)
def test_bad_bay_names(tmp_path: Path, name: str, reason: str) -> None:
    line = refusal(tmp_path, {}, [BAY | {"name": name}])
    assert reason in line, line


def test_an_unknown_key_with_a_newline_is_still_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, {}, [BAY])
    config.write_text(config.read_text().replace("[devices]", '[devices]\n"evil\\nkey" = 1', 1))
    assert "devices.evil\\nkey: unknown key" in agent_run(config)


def test_a_gpio_pin_that_cannot_be_claimed_names_the_bay() -> None:
    """In-process, with the mock factory: a pin already claimed elsewhere is one line too."""
    from gpiozero import LED
    from gpiozero.pins.mock import MockFactory

    from agent.config import parse_config
    from agent.daemon.cli import lights_for
    from filters.errors import ConfigError

    factory = MockFactory()
    held = LED(13, pin_factory=factory)
    second = {"name": "back", "red": 5, "amber": 6, "green": 13}
    config = parse_config(
        {"bays": [BAY, second], "lights": {"backend": "mock"}}, "agent.toml", check_folders=False
    )
    try:
        with pytest.raises(ConfigError) as caught:
            lights_for(config, factory)
        message = str(caught.value)
        assert message.startswith(
            "agent.toml: lights.backend: 'mock' cannot be used: bays[1]: GPIO 13 (green): "
        )
        assert "\n" not in message
        assert not factory.pin(17).state and not factory.pin(5).state  # the bays made are closed again
    finally:
        held.close()


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An empty folder on a read-only file system (a tmpfs mounted ro): nothing can be made in it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs")
    folder = tmp_path / "read-only"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("key", ["runtime", "journal"])
def test_a_folder_that_cannot_be_made(tmp_path: Path, read_only_folder: Path, key: str) -> None:
    line = refusal(tmp_path, {"paths": {key: str(read_only_folder / "sub")}})
    assert f"paths.{key}: cannot make {read_only_folder / 'sub'}: Read-only file system" in line, line


@pytest.mark.parametrize("key", ["device_key", "station_key", "station_signing_key"])
def test_key_files_that_hold_no_key_name_the_key(tmp_path: Path, key: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    garbage = keys / "garbage.key"
    garbage.write_text("not a key\n")
    generate_key_pair(keys / "station")  # a station key for the device key case (type does not matter)
    station = {"station_key": str(keys / "garbage.key")} if key == "station_key" else {}
    if key == "device_key":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        x25519 = X25519PrivateKey.generate().public_key()
        (keys / "journal.pub").write_bytes(
            x25519.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        station = {"station_key": str(keys / "journal.pub"), "device_key": str(garbage)}
    line = refusal(tmp_path, {"paths": station | {key: str(garbage)}})
    assert f"paths.{key}: {garbage}: not a PEM " in line, line
