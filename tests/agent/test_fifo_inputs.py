"""Files a device or a user can make into FIFOs are refused without blocking: filters in the
filters folder or on a sync stick, a stick's trust keys and their signatures, the status file, any
file a sync copies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.daemon.status import read_status
from agent.journal.copying import copy_atomically
from agent.journal.stick_filters import FILTER_FOLDER, TRUST_FOLDER, import_filters_from_stick
from filters.container import load_filter
from filters.errors import FieldtriageError, FilterRefused, JournalError

from .test_config_files import no_hang


def test_a_filter_that_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "kiosk.ftf")
    with no_hang(), pytest.raises(FilterRefused, match=r"not a regular file \(FIFO\)"):
        load_filter(tmp_path / "kiosk.ftf", None)
    (tmp_path / "folder.ftf").mkdir()
    with pytest.raises(FilterRefused, match=r"not a regular file \(folder\)"):
        load_filter(tmp_path / "folder.ftf", None)


def test_a_status_file_that_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "status.json")
    with no_hang(), pytest.raises(FieldtriageError, match=r"not a regular file \(FIFO\)"):
        read_status(tmp_path / "status.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(FieldtriageError, match="not a JSON object"):
        read_status(tmp_path / "list.json")


def test_a_sync_stick_full_of_fifos(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    (stick / FILTER_FOLDER).mkdir(parents=True)
    (stick / TRUST_FOLDER).mkdir()
    os.mkfifo(stick / FILTER_FOLDER / "new.ftf")
    os.mkfifo(stick / TRUST_FOLDER / "provider.pub")
    (stick / TRUST_FOLDER / "other.pub").write_bytes(b"-----BEGIN PUBLIC KEY-----\n")
    os.mkfifo(stick / TRUST_FOLDER / "other.pub.sig")
    station = Ed25519PrivateKey.generate().public_key()
    with no_hang():
        result = import_filters_from_stick(stick, tmp_path / "filters", tmp_path / "trust", station)
    assert result.filters_added == [] and result.trust_added == []
    assert len(result.refused) == 3 and all("not a regular file (FIFO)" in r for r in result.refused)


def test_copying_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "segment-00000000.ftj")
    with no_hang(), pytest.raises(JournalError, match="not a regular file"):
        copy_atomically(tmp_path / "segment-00000000.ftj", tmp_path / "out" / "copy")
    assert list((tmp_path / "out").iterdir()) == []
