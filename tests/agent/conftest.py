"""Fixtures shared by the agent's tests against the real udevd."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.scan import engine
from agent.scan.reader_processes import ReaderPool, close_idle

TEST_RULE = Path("/run/udev/rules.d/61-fieldtriage-test.rules")
TEST_MATCH = "FIELDTRIAGE_TEST=1"


@pytest.fixture
def udev_test_rule() -> Iterator[None]:
    """A udev rule that marks loop devices over ``*fieldtriage-test-*`` images (``TEST_MATCH``)."""
    TEST_RULE.parent.mkdir(parents=True, exist_ok=True)
    TEST_RULE.write_text(
        'SUBSYSTEM=="block", KERNEL=="loop*", ATTR{loop/backing_file}=="*fieldtriage-test-*", '
        'ENV{FIELDTRIAGE_TEST}="1"\n'
    )
    subprocess.run(["udevadm", "control", "--reload"], check=True)
    yield
    TEST_RULE.unlink()
    subprocess.run(["udevadm", "control", "--reload"], check=True)


@pytest.fixture
def reader_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ReaderPool]]:
    """The reader-process pools the engine makes during the test (``pool.count`` processes each);
    the processes left idle are ended afterwards."""
    made: list[ReaderPool] = []

    class RecordedPool(ReaderPool):
        def __init__(self, count: int) -> None:
            super().__init__(count)
            made.append(self)

    monkeypatch.setattr(engine, "ReaderPool", RecordedPool)
    yield made
    close_idle()
