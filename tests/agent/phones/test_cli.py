"""``fieldtriage scan --phone``: the one phone, or the one named; the states; the verdict's exit status."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent.phones.cli import scan_phone_command
from agent.phones.fake import FakePhone, FakePhoneBackend
from agent.scan import Scanner
from filters.errors import UsageError
from tests.agent.scan.conftest import FilterFactory, write_random


@pytest.fixture
def make_scanner(tmp_path: Path) -> tuple[bytes, object]:
    known = write_random(tmp_path / "known.jpg", 100_000, 3)
    contraband = FilterFactory(tmp_path / "filters").make([known])
    return known.read_bytes(), lambda: Scanner([contraband])


def args(phone: str = "", as_json: bool = False) -> argparse.Namespace:
    return argparse.Namespace(phone=phone, json=as_json)


def test_the_one_phone_is_scanned(
    make_scanner: tuple[bytes, object], capsys: pytest.CaptureFixture[str]
) -> None:
    known, scanner = make_scanner
    backend = FakePhoneBackend({"usb:001,009": FakePhone({"Internal shared storage": {"DCIM/k.jpg": known}})})
    assert scan_phone_command(args(as_json=True), scanner, backend) == 1  # type: ignore[arg-type]
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "priority_match" and report["device"]["kind"] == "phone"
    assert report["scan"]["hits"][0]["path"] == "Internal shared storage/DCIM/k.jpg"
    assert report["storages"][0]["description"] == "Internal shared storage"


def test_no_phone_or_several_is_a_one_line_error(make_scanner: tuple[bytes, object]) -> None:
    _, scanner = make_scanner
    with pytest.raises(UsageError, match="no phone found"):
        scan_phone_command(args(), scanner, FakePhoneBackend())  # type: ignore[arg-type]
    two = FakePhoneBackend({"usb:001,002": FakePhone({}), "usb:001,003": FakePhone({}, model="Other")})
    with pytest.raises(UsageError, match=r"several phones connected, name one: usb:001,002 \(Fake Phone\)"):
        scan_phone_command(args(), scanner, two)  # type: ignore[arg-type]


def test_a_locked_phone_says_what_to_do(
    make_scanner: tuple[bytes, object], capsys: pytest.CaptureFixture[str]
) -> None:
    _, scanner = make_scanner
    backend = FakePhoneBackend({"usb:001,002": FakePhone({"x": {}}, locked=True)})
    assert scan_phone_command(args("usb:001,002"), scanner, backend) == 3  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "unlock the phone and choose File transfer" in out and "INCOMPLETE" in out
