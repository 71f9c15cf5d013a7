"""The clock step: the helper (fieldtriage-clock.service) steps a fake clock forward to a sync token's
signed time and never back; it refuses forged, altered, foreign and odd requests in one line; the
agent's side asks, waits and journals what it saw. No test here sets this machine's clock: every
clock is a ``FakeClock``, and ``time.clock_settime_ns`` is replaced by a tripwire."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import BayConfig, PathsConfig, ScanConfig
from agent.daemon import bay as bay_module
from agent.daemon import clock_step
from agent.daemon.bay import Bay, BayWorker
from agent.daemon.clock_step import (
    ANSWER_NAME,
    MIN_STEP_NS,
    NONCE_BYTES,
    REQUEST_MAGIC,
    REQUEST_NAME,
    Answer,
    ClockStepper,
    FakeClock,
    decide,
    serve,
)
from agent.daemon.sync import SyncSetup, step_clock
from agent.devices.identity import DeviceIdentity
from agent.journal.clock import STEP_MARKER, ClockReader, StepMarker
from agent.journal.sync_token import TOKEN_NAME, SyncToken, verify_token_bytes, write_sync_token
from agent.lights.bay import BayLights, RecordingLights
from tests.agent.daemon.fake_kiosk import ListJournal

PREPARED = dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.UTC)
PREPARED_NS = int(PREPARED.timestamp()) * 10**9
DAY_NS = 86_400 * 10**9
BOOT = "3b1f4c1e-0000-4000-8000-00000000c10c"
IDENTITY = DeviceIdentity("/dev/sdz", "/devices/test/sdz", "sdz", 1 << 30, vendor="Test", model="Sync")


@pytest.fixture(autouse=True)
def never_the_real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def tripwire(*args: object) -> None:
        raise AssertionError("a test tried to set this machine's clock")

    monkeypatch.setattr(time, "clock_settime_ns", tripwire)


@pytest.fixture
def station() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def token_bytes(tmp_path: Path, key: Ed25519PrivateKey, prepared: dt.datetime = PREPARED) -> bytes:
    folder = tmp_path / f"stick-{os.urandom(4).hex()}"
    folder.mkdir()
    write_sync_token(folder, "1234-abcd", key, prepared, dt.timedelta(days=30))
    return (folder / TOKEN_NAME).read_bytes()


def one_line(answer: Answer) -> str:
    assert "\n" not in answer.line and answer.line
    return answer.line


# ---- the helper's decision -----------------------------------------------------------------------


def test_a_clock_behind_the_station_is_stepped_forward_to_its_signed_time(
    tmp_path: Path, station: Ed25519PrivateKey
) -> None:
    clock = FakeClock(wall_ns=0)  # a Pi without a battery clock, booted in 1970
    answer = decide(token_bytes(tmp_path, station), station.public_key(), clock, BOOT, "n1")
    assert answer.outcome == "stepped" and clock.now_ns() == PREPARED_NS
    assert clock.steps == [(0, PREPARED_NS)]
    assert (answer.from_ns, answer.to_ns, answer.monotonic_ns) == (0, PREPARED_NS, clock.monotonic)
    assert answer.token_created == PREPARED_NS // 10**9 and answer.boot_id == BOOT
    assert one_line(answer).startswith("clock stepped forward by ")


@pytest.mark.parametrize(
    "kiosk_ns",
    [
        PREPARED_NS,  # right on it
        PREPARED_NS - MIN_STEP_NS // 2,  # behind by less than the token's resolution
        PREPARED_NS + DAY_NS,  # the stick is a day old: the kiosk is right
        PREPARED_NS + 60 * 365 * DAY_NS,  # a kiosk clock decades ahead: never stepped back
    ],
)
def test_a_clock_not_behind_is_never_stepped_back(
    tmp_path: Path, station: Ed25519PrivateKey, kiosk_ns: int
) -> None:
    clock = FakeClock(wall_ns=kiosk_ns)
    answer = decide(token_bytes(tmp_path, station), station.public_key(), clock, BOOT, "n")
    assert answer.outcome == "not_behind" and clock.steps == [] and clock.now_ns() == kiosk_ns
    assert "not behind the station's time 2026-05-01T09:30:00Z" in one_line(answer)


def test_an_old_token_replayed_steps_nothing(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    """A stick prepared a year ago (or a compromised agent replaying one): behind the clock."""
    clock = FakeClock(wall_ns=PREPARED_NS)
    old = token_bytes(tmp_path, station, PREPARED - dt.timedelta(days=365))
    answer = decide(old, station.public_key(), clock, BOOT, "n")
    assert answer.outcome == "not_behind" and clock.steps == []


def test_forged_altered_foreign_and_odd_tokens_are_refused_in_one_line(
    tmp_path: Path, station: Ed25519PrivateKey
) -> None:
    genuine = token_bytes(tmp_path, station)
    envelope = cbor2.loads(genuine)
    forged = dict(envelope, signature=bytes(64))
    payload = cbor2.loads(envelope["payload"])
    later = dict(payload, created=payload["created"] + 10 * 365 * 86_400)  # a later time, unsigned
    altered = dict(envelope, payload=cbor2.dumps(later, canonical=True))
    foreign = token_bytes(tmp_path, Ed25519PrivateKey.generate())  # another station's key
    cases = {
        "forged": (cbor2.dumps(forged, canonical=True), "signature does not verify (forged or altered)"),
        "altered": (cbor2.dumps(altered, canonical=True), "signature does not verify (forged or altered)"),
        "another station": (foreign, "not by this kiosk's station"),
        "garbage": (b"\xff" * 40, "malformed sync token"),
        "empty": (b"", "malformed sync token"),
        "not a token": (cbor2.dumps({"format": "x"}), "not a sync token"),
        "oversized": (genuine + bytes(5000), "sync token oversized"),
    }
    for name, (data, reason) in cases.items():
        clock = FakeClock(wall_ns=0)
        answer = decide(data, station.public_key(), clock, BOOT, "n")
        assert answer.outcome == "refused" and clock.steps == [], name
        assert one_line(answer).startswith("clock not stepped: ") and reason in answer.line, (name, answer)


def test_a_station_time_beyond_reason_is_refused(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    clock = FakeClock(wall_ns=0)
    broken_station = token_bytes(tmp_path, station, dt.datetime(2150, 1, 1, tzinfo=dt.UTC))
    answer = decide(broken_station, station.public_key(), clock, BOOT, "n")
    assert answer.outcome == "refused" and "not plausible" in one_line(answer) and clock.steps == []


def test_a_clock_that_cannot_be_set_says_so(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    clock = FakeClock(wall_ns=0)
    clock.refuse = PermissionError(1, "Operation not permitted")
    answer = decide(token_bytes(tmp_path, station), station.public_key(), clock, BOOT, "n")
    assert answer.outcome == "failed" and "Operation not permitted" in one_line(answer)
    assert clock.now_ns() == 0


def test_the_verified_token_keeps_its_bytes(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    data = token_bytes(tmp_path, station)
    token = verify_token_bytes(data, station.public_key())
    assert isinstance(token, SyncToken) and token.raw == data and "raw" not in repr(token)


# ---- the helper's request and answer files -------------------------------------------------------


def request(folder: Path, token: bytes, nonce: bytes = b"\x01" * NONCE_BYTES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REQUEST_NAME
    path.write_bytes(REQUEST_MAGIC + nonce + token)
    return path


def test_serve_takes_the_request_answers_and_marks_the_step(
    tmp_path: Path, station: Ed25519PrivateKey
) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    path = request(tmp_path / "clock", token_bytes(tmp_path, station))
    clock = FakeClock(wall_ns=0)
    answer = serve(path, answers, station.public_key, clock, BOOT)
    assert answer is not None and answer.outcome == "stepped" and answer.request == "01" * NONCE_BYTES
    assert not path.exists()  # taken: the path unit does not start the helper again
    assert Answer.from_json((answers / ANSWER_NAME).read_bytes()) == answer
    assert (answers / STEP_MARKER.name).exists()
    # the journal's clock reader sees the step of this boot, not of another
    assert StepMarker(BOOT, answers / STEP_MARKER.name)() is True
    assert StepMarker("another-boot", answers / STEP_MARKER.name)() is False
    assert serve(path, answers, station.public_key, clock, BOOT) is None  # nothing waiting


def test_serve_without_a_step_leaves_no_marker(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    path = request(tmp_path / "clock", token_bytes(tmp_path, station))
    answer = serve(path, answers, station.public_key, FakeClock(wall_ns=PREPARED_NS + DAY_NS), BOOT)
    assert answer is not None and answer.outcome == "not_behind"
    assert not (answers / STEP_MARKER.name).exists() and not path.exists()


def test_serve_refuses_what_is_not_a_request(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    folder = tmp_path / "clock"
    folder.mkdir()
    path = folder / REQUEST_NAME
    target = tmp_path / "elsewhere"
    target.write_bytes(REQUEST_MAGIC + bytes(NONCE_BYTES) + token_bytes(tmp_path, station))
    path.symlink_to(target)
    cases: dict[str, tuple[Any, str]] = {
        "a symbolic link": (None, "request unreadable"),
        "a FIFO": (lambda: os.mkfifo(path), "request is not a regular file"),
        "no magic": (lambda: path.write_bytes(b"hello" * 10), "not a clock step request"),
        "oversized": (lambda: path.write_bytes(REQUEST_MAGIC + bytes(9000)), "request oversized"),
    }
    for name, (make, reason) in cases.items():
        if make is not None:
            make()
        clock = FakeClock(wall_ns=0)
        answer = serve(path, answers, station.public_key, clock, BOOT)
        assert answer is not None and answer.outcome == "refused" and reason in one_line(answer), name
        assert not os.path.lexists(path) and clock.steps == [], name
    assert target.exists()  # a link is removed, never followed


def test_serve_without_the_station_key_refuses(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    answers = tmp_path / "answers"
    answers.mkdir()
    config = tmp_path / "agent.toml"
    config.write_text('[lights]\nbackend = "mock"\n')
    path = request(tmp_path / "clock", token_bytes(tmp_path, station))
    clock = FakeClock(wall_ns=0)
    answer = serve(path, answers, clock_step.station_key_from_config(config), clock, BOOT)
    assert answer is not None and answer.outcome == "refused" and clock.steps == []
    assert "no paths.station_signing_key" in one_line(answer)


def test_main_reads_the_station_key_agent_toml_names(
    tmp_path: Path, station: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]
) -> None:
    public = tmp_path / "station-signing.pub"
    public.write_bytes(
        station.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = tmp_path / "agent.toml"
    config.write_text(f'[paths]\nstation_signing_key = "{public}"\n')
    answers = tmp_path / "answers"
    answers.mkdir()
    path = request(tmp_path / "clock", token_bytes(tmp_path, station))
    clock = FakeClock(wall_ns=0)
    argv = ["--config", str(config), "--request", str(path), "--answers", str(answers)]
    assert clock_step.main(argv, clock=clock) == 0
    assert clock.now_ns() == PREPARED_NS
    assert capsys.readouterr().out.startswith("fieldtriage-clock: clock stepped forward by ")
    assert clock_step.main(argv, clock=clock) == 0 and "no request" in capsys.readouterr().out


# ---- the agent's side ----------------------------------------------------------------------------


class Helper:
    """fieldtriage-clock.service in the test's thread: the agent's wait runs it (the path unit)."""

    def __init__(self, folder: Path, answers: Path, station: Ed25519PrivateKey, clock: FakeClock) -> None:
        self.folder, self.answers, self.station, self.clock = folder, answers, station, clock
        self.served: list[Answer] = []

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        answer = serve(self.folder / REQUEST_NAME, self.answers, self.station.public_key, self.clock, BOOT)
        if answer is not None:
            self.served.append(answer)


def stepper_and_helper(
    tmp_path: Path, station: Ed25519PrivateKey, wall_ns: int
) -> tuple[ClockStepper, Helper]:
    clock = FakeClock(wall_ns=wall_ns)
    answers = tmp_path / "fieldtriage-clock"
    answers.mkdir()
    helper = Helper(tmp_path / "run" / "clock", answers, station, clock)
    stepper = ClockStepper(
        helper.folder, answers, wall_ns=clock.now_ns, monotonic_ns=clock.monotonic_ns, sleep=helper.sleep
    )
    return stepper, helper


def test_the_agent_asks_and_journals_the_step_it_saw(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    stepper, helper = stepper_and_helper(tmp_path, station, wall_ns=3 * DAY_NS)
    outcome = stepper.step(token_bytes(tmp_path, station))
    assert outcome.outcome == "stepped" and helper.served[0].outcome == "stepped"
    ((before, after),) = helper.clock.steps
    assert after == PREPARED_NS and before >= 3 * DAY_NS
    assert outcome.observed_step_ns == after - before  # the wall clock against the monotonic
    record = outcome.record()
    assert record is not None
    assert record["type"] == "clock_step" and record["source"] == "sync_token"
    assert (record["from_ns"], record["to_ns"]) == (before, PREPARED_NS)
    assert record["monotonic_ns"] == helper.served[0].monotonic_ns and record["token_id"]
    assert outcome.summary()["outcome"] == "stepped"


def test_the_agent_journals_no_step_when_the_clock_was_right(
    tmp_path: Path, station: Ed25519PrivateKey
) -> None:
    stepper, _ = stepper_and_helper(tmp_path, station, wall_ns=PREPARED_NS + DAY_NS)
    outcome = stepper.step(token_bytes(tmp_path, station))
    assert outcome.outcome == "not_behind" and outcome.record() is None and outcome.observed_step_ns == 0


def test_a_stale_answer_to_another_request_is_not_taken(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    stepper, helper = stepper_and_helper(tmp_path, station, wall_ns=0)
    stale = Answer("ff" * NONCE_BYTES, "stepped", "an answer to an earlier request")
    (helper.answers / ANSWER_NAME).write_bytes(stale.to_json())
    outcome = stepper.step(token_bytes(tmp_path, station))
    assert outcome.answer is not None and outcome.answer.request != stale.request
    assert outcome.outcome == "stepped"


def test_no_helper_and_no_answer(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    missing = ClockStepper(tmp_path / "clock", tmp_path / "not-installed")
    outcome = missing.step(b"token")
    assert outcome.outcome == "no_helper" and not (tmp_path / "clock").exists()

    clock = FakeClock(wall_ns=0)
    (tmp_path / "answers").mkdir()
    silent = ClockStepper(
        tmp_path / "clock", tmp_path / "answers", wait_seconds=2,
        wall_ns=clock.now_ns, monotonic_ns=clock.monotonic_ns, sleep=clock.advance,
    )  # fmt: skip
    outcome = silent.step(token_bytes(tmp_path, station))
    assert outcome.outcome == "no_answer" and "no answer in 2 s" in outcome.line
    assert not (tmp_path / "clock" / REQUEST_NAME).exists()  # taken back
    assert outcome.record() is None and clock.steps == []


def test_step_clock_never_stops_a_sync(tmp_path: Path) -> None:
    class Broken:
        def step(self, token_bytes: bytes) -> Any:
            raise RuntimeError("helper exploded")

    setup = SyncSetup(Ed25519PrivateKey.generate().public_key(), None, PathsConfig(), clock=Broken())  # type: ignore[arg-type]
    token = SyncToken("1234-abcd", "t" * 32, 1, 2, "s")
    record, summary = step_clock(setup, token)
    assert record is None and summary["outcome"] == "failed" and "helper exploded" in summary["line"]


class FakeMounter:
    def mount(self, source: str) -> Any:
        return self

    def close(self) -> None:
        pass


def test_a_sync_stick_journals_the_clock_step_then_the_sync(
    tmp_path: Path, station: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = token_bytes(tmp_path, station)
    token = verify_token_bytes(data, station.public_key())
    assert isinstance(token, SyncToken)
    monkeypatch.setattr(bay_module, "find_sync_partition", lambda mounted, key: ((object(), token), []))
    monkeypatch.setattr(bay_module, "run_sync", lambda *args: {"type": "sync", "token_id": token.token_id})
    stepper, helper = stepper_and_helper(tmp_path, station, wall_ns=0)
    setup = SyncSetup(station.public_key(), None, PathsConfig(runtime=tmp_path / "run"), clock=stepper)
    journal = ListJournal()
    bay = Bay(BayConfig("front", red=17, amber=27, green=22), BayLights("front", RecordingLights()))
    mounter: Any = FakeMounter()
    worker = BayWorker(bay, IDENTITY, mounter, [], ScanConfig(), journal, sync=setup, refusal="no filter")
    worker.run()  # a kiosk with no valid filter still takes sync sticks
    step, sync = journal.records
    assert step["type"] == "clock_step" and step["to_ns"] == PREPARED_NS and step["bay"] == "front"
    assert sync["type"] == "sync" and sync["clock"]["outcome"] == "stepped"
    assert bay.verdict == "synced" and helper.clock.now_ns() >= PREPARED_NS


def test_the_journal_clock_says_sync_stick_after_a_step(tmp_path: Path, station: Ed25519PrivateKey) -> None:
    stepper, helper = stepper_and_helper(tmp_path, station, wall_ns=0)
    reader = ClockReader(
        boot_id=BOOT, synchronised=lambda: False, wall_ns=helper.clock.now_ns,
        monotonic_ns=helper.clock.monotonic_ns, stepped=StepMarker(BOOT, helper.answers / STEP_MARKER.name),
    )  # fmt: skip
    assert reader.now()["clock_source"] == "none"
    stepper.step(token_bytes(tmp_path, station))
    stamp = reader.now()
    assert stamp["clock_source"] == "sync_stick" and stamp["clock_synchronised"] is False
    assert stamp["wall_ns"] >= PREPARED_NS


def test_the_daemon_without_the_helper_says_so_at_once(tmp_path: Path) -> None:
    if Path("/run/fieldtriage-clock").is_dir():
        pytest.skip("fieldtriage-clock.service is installed on this machine")
    setup = SyncSetup(Ed25519PrivateKey.generate().public_key(), None, PathsConfig(runtime=tmp_path))
    record, summary = step_clock(setup, SyncToken("u", "t", 1, 2, "s", raw=b"x"))
    assert record is None and summary["outcome"] == "no_helper" and not (tmp_path / "clock").exists()
