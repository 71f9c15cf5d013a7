"""Stepping a kiosk's clock forward to the station's signed time on a sync stick, never backwards.

A sync token's ``created`` is the station's clock when it prepared the stick, signed with the
station's key (agent/journal/sync_token.py). The stick is used after it was prepared, so the true
time is no earlier: a kiosk whose clock is behind it is wrong, and stepping it forward to ``created``
is always right; a kiosk ahead of it may be right, and is never stepped back.

Setting the clock takes CAP_SYS_TIME and clock_settime(2), which the agent's hardened unit withholds
(``ProtectClock=yes``, ``SystemCallFilter=~@clock``) and keeps withholding. Two processes:

* the agent (``ClockStepper``, from ``agent.daemon.sync.step_clock`` when a sync stick is plugged):
  writes ``REQUEST_MAGIC || 16-byte nonce || the token's bytes`` to
  ``/run/fieldtriage/clock/request`` (its own runtime folder), waits for the answer with that
  nonce (at most ``WAIT_SECONDS``), and sees for itself how far the wall clock moved against the
  monotonic clock while it waited (``observed_step_ns``);
* ``fieldtriage-clock.service`` (systemd/, started by ``fieldtriage-clock.path`` when the request
  appears; CAP_SYS_TIME and @clock, nothing else): ``python -m agent.daemon.clock_step`` takes the
  request (removes it), verifies the token itself with the station signing key that agent.toml
  names (format, key id, signature; not the stick or the expiry: any time the station signed is a
  lower bound), and steps CLOCK_REALTIME to ``created`` when the clock is behind it by more than
  ``MIN_STEP_NS``. It writes its answer to ``/run/fieldtriage-clock/answer.json`` and, after a
  step, ``step.json`` (the marker ``agent.journal.clock`` reads: ``clock_source`` "sync_stick").

Nothing the agent writes can make the helper step to a time the station did not sign, or step
backwards: a compromised agent can at most replay an older token, which is behind the clock.

Example (a fake clock: tests never set the real one)::

    >>> import datetime as dt, tempfile, pathlib
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> from agent.journal.sync_token import TOKEN_NAME, write_sync_token
    >>> station, folder = Ed25519PrivateKey.generate(), pathlib.Path(tempfile.mkdtemp())
    >>> prepared = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    >>> _ = write_sync_token(folder, "1234-abcd", station, prepared, dt.timedelta(days=30))
    >>> clock = FakeClock(wall_ns=0)  # a Pi without a battery clock: 1970
    >>> answer = decide((folder / TOKEN_NAME).read_bytes(), station.public_key(), clock, "boot", "n")
    >>> answer.outcome, clock.now_ns() >= int(prepared.timestamp()) * 10**9
    ('stepped', True)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import secrets
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal.clock import CLOCK_HELPER_FOLDER, STEP_MARKER, read_boot_id
from agent.journal.sync_token import MAX_TOKEN_BYTES, verify_token_bytes
from filters.errors import FieldtriageError
from filters.keys import load_public_key
from filters.safe_files import read_regular_file

log = logging.getLogger(__name__)

REQUEST_NAME = "request"  # in the agent's runtime folder's ``clock`` folder
ANSWER_NAME = "answer.json"  # in CLOCK_HELPER_FOLDER
REQUEST_MAGIC = b"FTCLOCK1"
NONCE_BYTES = 16
MAX_REQUEST_BYTES = len(REQUEST_MAGIC) + NONCE_BYTES + MAX_TOKEN_BYTES
MAX_ANSWER_BYTES = 8192
MIN_STEP_NS = 10**9  # the token's time is whole seconds; less than this is not worth a step
LATEST_STATION_SECONDS = 4_102_444_800  # 2100-01-01: beyond it the station's clock is broken
WAIT_SECONDS = 30.0  # the helper is a Python start (a few seconds on a Pi, more under QEMU's TCG)
POLL_SECONDS = 0.1
DEFAULT_CONFIG = Path("/etc/fieldtriage/agent.toml")
DEFAULT_REQUEST = Path("/run/fieldtriage/clock") / REQUEST_NAME
MAX_CONFIG_BYTES = 256 * 1024

Outcome = Literal["stepped", "not_behind", "refused", "failed"]


class ClockSetter(Protocol):
    """The system's wall clock, as the helper reads and sets it (a fake in tests)."""

    def now_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def set_ns(self, wall_ns: int) -> None: ...


class SystemClock:
    """CLOCK_REALTIME and CLOCK_MONOTONIC; ``set_ns`` is clock_settime(2) (CAP_SYS_TIME)."""

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_REALTIME)

    def monotonic_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def set_ns(self, wall_ns: int) -> None:
        time.clock_settime_ns(time.CLOCK_REALTIME, wall_ns)


class FakeClock:
    """A wall clock that is the monotonic clock plus an offset: steps change the offset, and are
    remembered (``steps``: (from, to)). ``advance`` moves both clocks on."""

    def __init__(self, wall_ns: int, monotonic_ns: int = 5 * 10**9) -> None:
        self.monotonic = monotonic_ns
        self.offset = wall_ns - monotonic_ns
        self.steps: list[tuple[int, int]] = []
        self.refuse: OSError | None = None  # set: set_ns fails like clock_settime without the right

    def now_ns(self) -> int:
        return self.monotonic + self.offset

    def monotonic_ns(self) -> int:
        return self.monotonic

    def set_ns(self, wall_ns: int) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.steps.append((self.now_ns(), wall_ns))
        self.offset = wall_ns - self.monotonic

    def advance(self, seconds: float) -> None:
        self.monotonic += int(seconds * 1e9)


@dataclass(frozen=True)
class Answer:
    """What the helper did with one request; ``line`` says it in one line."""

    request: str  # the request's nonce, hex
    outcome: Outcome
    line: str
    boot_id: str = ""
    token_id: str | None = None
    token_created: int | None = None  # Unix seconds, the station's signed time
    from_ns: int | None = None  # the clock just before the step (or when it was compared)
    to_ns: int | None = None  # what it was set to
    monotonic_ns: int | None = None  # CLOCK_MONOTONIC at the step (or the comparison)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Answer | None:
        try:
            fields = json.loads(data)
        except ValueError:
            return None
        if not isinstance(fields, dict) or set(fields) != set(cls.__dataclass_fields__):
            return None
        kinds = {"request": str, "outcome": str, "line": str, "boot_id": str}
        if any(not isinstance(fields[k], kind) for k, kind in kinds.items()):
            return None
        numbers = ("token_created", "from_ns", "to_ns", "monotonic_ns")
        if any(not (fields[k] is None or _is_int(fields[k])) for k in numbers):
            return None
        if fields["token_id"] is not None and not isinstance(fields["token_id"], str):
            return None
        if fields["outcome"] not in ("stepped", "not_behind", "refused", "failed"):
            return None
        return cls(**fields)


def iso(ns: int) -> str:
    try:
        return f"{dt.datetime.fromtimestamp(ns / 1e9, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns"


def span(ns: int) -> str:
    seconds = abs(ns) / 1e9
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


# ---- the helper (fieldtriage-clock.service) ------------------------------------------------------


def decide(
    token_bytes: bytes, station_key: Ed25519PublicKey, clock: ClockSetter, boot_id: str, nonce: str
) -> Answer:
    """Verify the token and step ``clock`` forward to its ``created`` when it is behind."""
    token = verify_token_bytes(token_bytes, station_key)
    if isinstance(token, str):
        return Answer(nonce, "refused", f"clock not stepped: {token}", boot_id)

    def answer(outcome: Outcome, line: str, **clock_fields: int) -> Answer:
        return Answer(nonce, outcome, line, boot_id, token.token_id, token.created, **clock_fields)

    if not 0 < token.created < LATEST_STATION_SECONDS or token.created > token.expires:
        return answer(
            "refused", f"clock not stepped: the station's time in token {token.token_id} is not plausible"
        )
    target = token.created * 10**9
    before, monotonic = clock.now_ns(), clock.monotonic_ns()
    if target <= before + MIN_STEP_NS:
        line = (
            f"clock not stepped: it reads {iso(before)}, not behind the station's time "
            f"{iso(target)} (sync token {token.token_id})"
        )
        return answer("not_behind", line, from_ns=before, monotonic_ns=monotonic)
    try:
        clock.set_ns(target)
    except OSError as err:
        line = f"clock not stepped: cannot set it: {err.strerror or err}"
        return answer("failed", line, from_ns=before, monotonic_ns=monotonic)
    line = (
        f"clock stepped forward by {span(target - before)}, from {iso(before)} to {iso(target)}, "
        f"the station's time in sync token {token.token_id}"
    )
    return answer("stepped", line, from_ns=before, to_ns=target, monotonic_ns=monotonic)


def take_request(path: Path) -> bytes | str | None:
    """The request's bytes, removed from its folder; None when there is none; a line when it is not
    a request (also removed: it must not trigger the path unit again)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        _remove(path)
        return f"request unreadable: {err.strerror}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "request is not a regular file"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_REQUEST_BYTES + 1)
    except OSError as err:
        return f"request unreadable: {err.strerror}"
    finally:
        os.close(fd)
        _remove(path)
    if len(data) > MAX_REQUEST_BYTES:
        return "request oversized"
    return data


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        log.error("cannot remove %s: %s", path, err.strerror)


def serve(
    request: Path,
    answers: Path,
    station_key: Callable[[], Ed25519PublicKey | str],
    clock: ClockSetter,
    boot_id: str,
) -> Answer | None:
    """Answer the request waiting at ``request`` (None when there is none): verify, maybe step,
    write ``answers/answer.json`` and, after a step, the step marker ``answers/step.json``."""
    data = take_request(request)
    if data is None:
        return None
    if isinstance(data, str):
        answer = Answer("", "refused", f"clock not stepped: {data}", boot_id)
    elif not data.startswith(REQUEST_MAGIC) or len(data) < len(REQUEST_MAGIC) + NONCE_BYTES:
        answer = Answer("", "refused", "clock not stepped: not a clock step request", boot_id)
    else:
        nonce = data[len(REQUEST_MAGIC) : len(REQUEST_MAGIC) + NONCE_BYTES].hex()
        key = station_key()
        if isinstance(key, str):
            answer = Answer(nonce, "refused", f"clock not stepped: {key}", boot_id)
        else:
            answer = decide(data[len(REQUEST_MAGIC) + NONCE_BYTES :], key, clock, boot_id, nonce)
    if answer.outcome == "stepped":
        _write_atomically(answers / STEP_MARKER.name, answer.to_json())
    _write_atomically(answers / ANSWER_NAME, answer.to_json())
    return answer


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as f:
        f.write(data)
    temporary.replace(path)


def station_key_from_config(config: Path) -> Callable[[], Ed25519PublicKey | str]:
    """The station signing key agent.toml names (``paths.station_signing_key``), or why not."""

    def load() -> Ed25519PublicKey | str:
        try:
            data = read_regular_file(config, MAX_CONFIG_BYTES, FieldtriageError, "a configuration file")
            paths = tomllib.loads(data.decode("utf-8")).get("paths", {})
            named = paths.get("station_signing_key") if isinstance(paths, dict) else None
            if not isinstance(named, str) or not named:
                return f"{config}: no paths.station_signing_key"
            return load_public_key(Path(named))
        except FieldtriageError as err:
            return str(err)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            return f"{config}: not a configuration file ({err})"

    return load


def main(argv: Sequence[str] | None = None, clock: ClockSetter | None = None) -> int:
    """``python -m agent.daemon.clock_step``: what fieldtriage-clock.service runs (as root, with
    CAP_SYS_TIME only). Exit 0 with an answer written (a refusal too), 2 when none could be."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.daemon.clock_step",
        description="Step the clock forward to the station's signed time of a sync token the agent "
        "left as a request (fieldtriage-clock.service); never backwards.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="agent.toml (its station key)")
    parser.add_argument("--station-key", type=Path, help="the station's signing.pub, instead of agent.toml's")
    parser.add_argument("--request", type=Path, default=DEFAULT_REQUEST, help="the agent's request file")
    parser.add_argument("--answers", type=Path, default=CLOCK_HELPER_FOLDER, help="folder for the answer")
    args = parser.parse_args(argv)
    if args.station_key is not None:
        named: Path = args.station_key

        def key() -> Ed25519PublicKey | str:
            try:
                return load_public_key(named)
            except FieldtriageError as err:
                return str(err)

    else:
        key = station_key_from_config(args.config)
    try:
        answer = serve(args.request, args.answers, key, clock or SystemClock(), read_boot_id())
    except OSError as err:
        print(f"fieldtriage-clock: cannot answer: {err.strerror}: {err.filename}", file=sys.stderr)
        return 2
    print(f"fieldtriage-clock: {answer.line if answer else 'no request'}", flush=True)
    return 0


# ---- the agent ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepOutcome:
    """What came of asking: the helper's answer, or why there is none; ``observed_step_ns`` is how
    far the wall clock moved against the monotonic clock while the agent waited."""

    outcome: str  # an Answer's outcome, or "no_helper", "no_answer"
    line: str
    answer: Answer | None = None
    observed_step_ns: int | None = None

    def summary(self) -> dict[str, Any]:
        """The sync record's ``clock`` field."""
        return {"outcome": self.outcome, "line": self.line, "observed_step_ns": self.observed_step_ns}

    def record(self) -> dict[str, Any] | None:
        """The ``clock_step`` journal record, when the clock was stepped."""
        answer = self.answer
        if answer is None or answer.outcome != "stepped":
            return None
        return {
            "type": "clock_step",
            "source": "sync_token",
            "token_id": answer.token_id,
            "from_ns": answer.from_ns,
            "to_ns": answer.to_ns,
            "monotonic_ns": answer.monotonic_ns,
            "observed_step_ns": self.observed_step_ns,
            "line": answer.line,
        }


class ClockStepper:
    """The agent's side: ask fieldtriage-clock.service to step the clock to a token's time, wait for
    its answer. One request at a time (two sync sticks at once take turns)."""

    def __init__(
        self,
        request_folder: Path,
        answer_folder: Path = CLOCK_HELPER_FOLDER,
        wait_seconds: float = WAIT_SECONDS,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.request_folder, self.answer_folder = request_folder, answer_folder
        self.wait_seconds = wait_seconds
        self._wall_ns, self._monotonic_ns, self._sleep = wall_ns, monotonic_ns, sleep
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """The helper is installed: its folder exists from boot (systemd/fieldtriage.conf)."""
        return self.answer_folder.is_dir()

    def step(self, token_bytes: bytes) -> StepOutcome:
        if not self.available:
            return StepOutcome("no_helper", f"clock not stepped: no clock helper ({self.answer_folder})")
        with self._lock:
            nonce = secrets.token_bytes(NONCE_BYTES)
            before = self._wall_ns() - self._monotonic_ns()
            try:
                self._write_request(REQUEST_MAGIC + nonce + token_bytes)
            except OSError as err:
                return StepOutcome("failed", f"clock not stepped: cannot write the request: {err.strerror}")
            answer = self._wait(nonce.hex())
            observed = self._wall_ns() - self._monotonic_ns() - before
        if answer is None:
            line = f"clock not stepped: fieldtriage-clock.service gave no answer in {self.wait_seconds:g} s"
            return StepOutcome("no_answer", line, observed_step_ns=observed)
        return StepOutcome(answer.outcome, answer.line, answer, observed)

    def _write_request(self, data: bytes) -> None:
        self.request_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.request_folder / f".{REQUEST_NAME}.tmp"
        with temporary.open("wb") as f:
            f.write(data)
        temporary.replace(self.request_folder / REQUEST_NAME)  # the path unit sees it whole

    def _wait(self, nonce: str) -> Answer | None:
        deadline = self._monotonic_ns() + int(self.wait_seconds * 1e9)
        path = self.answer_folder / ANSWER_NAME
        while True:
            try:
                with path.open("rb") as f:
                    answer = Answer.from_json(f.read(MAX_ANSWER_BYTES + 1))
            except OSError:
                answer = None
            if answer is not None and answer.request == nonce:
                return answer
            if self._monotonic_ns() >= deadline:
                self._withdraw()
                return None
            self._sleep(POLL_SECONDS)

    def _withdraw(self) -> None:
        """A request nobody took is taken back: a helper installed later must not act on it."""
        try:
            (self.request_folder / REQUEST_NAME).unlink()
        except OSError:
            pass


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


if __name__ == "__main__":
    sys.exit(main())
