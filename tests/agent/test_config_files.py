"""Configured files are opened without ever blocking: the configuration and every key file (the
device key, the station's keys, the trust folder's ``*.pub``) through ``filters.safe_files``."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from agent.config import MAX_CONFIG_BYTES, load_config
from agent.journal.keys import load_or_create_device_key, load_x25519_public_key
from filters.errors import ConfigError, KeyFileError
from filters.keys import MAX_KEY_FILE_BYTES, TrustStore, generate_key_pair, load_private_key, load_public_key
from filters.safe_files import read_regular_file

SECONDS = 5


@contextmanager
def no_hang(seconds: int = SECONDS) -> Iterator[None]:
    """Fail (instead of hanging the test run) when the body blocks for ``seconds``."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.key"
    os.mkfifo(path)
    return path


def test_read_regular_file(tmp_path: Path, fifo: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"abc")
    assert read_regular_file(path, 3, KeyFileError, "a key file") == b"abc"
    with pytest.raises(KeyFileError, match=r"small: too large for a key file \(3 bytes, at most 2\)"):
        read_regular_file(path, 2, KeyFileError, "a key file")
    with no_hang(), pytest.raises(KeyFileError, match=r"fifo.key: not a regular file \(FIFO\)$"):
        read_regular_file(fifo, 10, KeyFileError, "a key file")
    with pytest.raises(ConfigError, match=r"not a regular file \(folder\)$"):
        read_regular_file(tmp_path, 10, ConfigError, "a configuration file")
    with pytest.raises(ConfigError, match=r"/dev/zero: not a regular file \(character device\)$"):
        read_regular_file(Path("/dev/zero"), 10, ConfigError, "a configuration file")
    with pytest.raises(ConfigError, match="none: cannot read: No such file or directory$"):
        read_regular_file(tmp_path / "none", 10, ConfigError, "a configuration file")
    with pytest.raises(ConfigError, match="x: cannot read: Not a directory$"):
        read_regular_file(path / "x", 10, ConfigError, "a configuration file")
    with pytest.raises(ConfigError, match="contains a NUL byte$"):
        read_regular_file(tmp_path / "a\0b", 10, ConfigError, "a configuration file")


def test_key_files_that_are_fifos(fifo: Path) -> None:
    for load in (load_public_key, load_private_key, load_x25519_public_key, load_or_create_device_key):
        with no_hang(), pytest.raises(KeyFileError, match=r"fifo.key: not a regular file \(FIFO\)$"):
            load(fifo)
    with no_hang(), pytest.raises(KeyFileError, match=r"fifo.key: not a regular file \(FIFO\)$"):
        TrustStore.from_paths([fifo])


def test_a_fifo_in_a_trust_folder_is_skipped(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    generate_key_pair(trust / "provider")
    os.mkfifo(trust / "fifo.pub")
    (trust / "folder.pub").mkdir()
    with no_hang():
        store = TrustStore.from_paths([trust])
    assert len(store.key_ids()) == 1
    assert sorted(str(p) for p in store.problems) == [
        f"{trust / 'fifo.pub'}: not a regular file (FIFO)",
        f"{trust / 'folder.pub'}: not a regular file (folder)",
    ]


def test_a_huge_key_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.pub"
    path.write_bytes(b"-" * (MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(KeyFileError, match=r"huge.pub: too large for a key file"):
        load_public_key(path)


def test_config_files_that_are_fifos_devices_or_huge(tmp_path: Path, fifo: Path) -> None:
    with no_hang(), pytest.raises(ConfigError, match=r"fifo.key: not a regular file \(FIFO\)$"):
        load_config(fifo)
    with pytest.raises(ConfigError, match=r"/dev/null: not a regular file \(character device\)$"):
        load_config("/dev/null")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match=r"huge.toml: too large for a configuration file"):
        load_config(huge)


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[scan]\nmode = "full"\n# caf\xe9\n')
    with pytest.raises(ConfigError, match=r"agent.toml: not valid UTF-8 at line 3 \(byte 0xe9\)$"):
        load_config(path)


def test_a_device_key_whose_folder_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match=r"device.key: cannot make its folder: Not a directory$"):
        load_or_create_device_key(tmp_path / "file" / "keys" / "device.key")
