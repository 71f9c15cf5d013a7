"""The bay's progress pattern moves from the first second (issue 14, item 2): amber 1/s, 2/s past
half, 4/s past 90 %, from the totals estimated at mount, not only once the walk is done.

One bay's worker, run in the test's thread, with the real mounter on an ext4 image and the real
scanner (its files read a few milliseconds slowly, so that the walk takes a while); the lights are
recorded (``RecordingLights``)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.config import BayConfig, ScanConfig
from agent.daemon import bay as bay_module
from agent.daemon.bay import Bay, BayWorker
from agent.demo.images import PartitionSpec, make_disk_image
from agent.devices.identity import DeviceIdentity
from agent.devices.mounter import Mounter
from agent.lights.bay import BayLights, RecordingLights
from agent.lights.signals import Signal, levels_at
from agent.scan.engine import Scanner
from agent.scan.events import ScanEvent, ScanProgress
from agent.scan.reader import CancelFlag, DigestResult, read_digests
from tests.agent.daemon.fake_kiosk import ListJournal
from tests.agent.scan.conftest import FilterFactory, write_random

pytestmark = [pytest.mark.root]


def blinks_per_second(progress: float | None) -> int:
    """How fast the bay's amber light blinks while scanning, read off the signal table."""
    amber = [levels_at(Signal.SCANNING, t / 100, progress).amber for t in range(100)]
    return sum(1 for a, b in itertools.pairwise(amber) if b and not a) + amber[0]


def test_blinks_per_second_reads_the_signal_table() -> None:
    assert [blinks_per_second(p) for p in (None, 0.0, 0.49, 0.5, 0.89, 0.9, 1.0)] == [1, 1, 1, 2, 2, 4, 4]


def test_the_bay_blinks_faster_past_half_before_the_walk_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {
        f"{folder}/f{i:03}.jpg": os.urandom(2000 + i)
        for folder in ("DCIM/Camera", "Download", "Documents/a", "Documents/b", "Music", "Android/data")
        for i in range(50)
    }
    image = make_disk_image(tmp_path / "fieldtriage-test-bay.img", "mbr", [PartitionSpec("ext4", files)])
    known = FilterFactory(tmp_path / "filters").make([write_random(tmp_path / "known.jpg", 40_000, 5)])

    def slow(fd: int, size: int, kinds: Sequence[str], cancel: CancelFlag | None) -> DigestResult:
        time.sleep(0.012)  # slow media
        return read_digests(fd, size, kinds, cancel)

    # the bay's own scanner, its reads slowed down
    monkeypatch.setattr(bay_module, "Scanner", lambda *a, **kw: Scanner(*a, **kw, reader=slow))
    lights = BayLights("front", RecordingLights())
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), lights)
    identity = DeviceIdentity(str(image), "/devices/test/stick", "stick", image.stat().st_size, vendor="Test")
    worker = BayWorker(bay, identity, Mounter(tmp_path / "run"), [known], ScanConfig(), ListJournal())
    seen: list[tuple[bool, float | None, int]] = []  # walk done, the bay's progress, blinks per second
    files_done: list[int] = []
    on_event = worker._on_event

    def watched(event: ScanEvent) -> None:
        on_event(event)
        if isinstance(event, ScanProgress):
            assert lights.signal is Signal.SCANNING and lights.progress == bay.progress
            seen.append((event.walk_done, bay.progress, blinks_per_second(lights.progress)))
            files_done.append(event.files_done)

    worker._on_event = watched  # type: ignore[method-assign]
    worker.run()
    assert bay.verdict == "no_match" and lights.signal is Signal.NO_MATCH
    before = [(progress, blinks) for done, progress, blinks in seen if not done]
    assert before, "no progress event before the walk ended"
    assert all(progress is not None for progress, _ in before), "a fraction from the first event"
    # above 0 as soon as files are done (looked up: in batches of 64 with one worker)
    assert all(p for (p, _), done in zip(before, files_done, strict=False) if done), seen
    assert any(blinks == 2 for _, blinks in before), f"no 2/s blink before the walk ended: {seen}"
    shown = [progress for _, progress, _ in seen]
    assert shown == sorted(shown), "the pattern never goes back"  # type: ignore[type-var]
    assert seen[-1][1] == 1.0 and bay.progress == 1.0
    assert bay.describe()["progress"] == 1.0
