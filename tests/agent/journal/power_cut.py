"""SIGKILL a real journal writer at random points, many times over one journal folder.

A driver process (``python -m tests.agent.journal.power_cut``, so the test runner never forks)
forks one writer after another. Each writer opens the journal (the reopen after the last kill:
it must succeed), then appends records of varied sizes (some of 64 to 512 KiB, so a kill can
land inside a write), rotating often, and writes each record's id to a pipe only AFTER append
returned. The driver waits for the writer's "opened", sleeps a random time, SIGKILLs it, and keeps
every id it acknowledged. At the end it opens the journal itself, appends, closes, and prints one
JSON line: what the station must find.

Used by tests/agent/journal/test_power_cut.py (200 kills) and bench/soak_journal.py (1,000).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.journal import EncryptedJournal
from agent.journal.segment_format import parse_header
from agent.journal.tail import segment_files

ROOT = Path(__file__).resolve().parents[3]
SEGMENT_RECORDS = 6  # rotate (seal, new segment) often: kills land in every step of a segment's life


@dataclass
class KillRun:
    kills: int = 0
    reopen_failures: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def writer(folder: Path, device_key: Path, station_key: Path, run: int, ack: int) -> None:
    """The child: open, then append for ever, acknowledging each record once it is on disk."""
    try:
        journal = EncryptedJournal.open(folder, device_key, station_key, max_segment_records=SEGMENT_RECORDS)
    except Exception as err:
        os.write(ack, f"F {' '.join(str(err).split())}\n".encode())
        os._exit(3)
    os.write(ack, b"O\n")
    rng = random.Random(run)
    number = 0
    while True:
        large = rng.random() < 0.03  # a write long enough for a kill to land inside it
        size = rng.randrange(1 << 16, 1 << 19) if large else rng.choice((0, 10, 200, 3000, 20_000))
        record_id = f"{run}-{number}"
        try:
            journal.append({"type": "load", "id": record_id, "pad": b"p" * size})
        except Exception as err:
            os.write(ack, f"E {' '.join(str(err).split())}\n".encode())
            os._exit(4)
        os.write(ack, f"A {record_id}\n".encode())
        number += 1


def kill_delay(rng: random.Random) -> float:
    """Seconds from "opened" to the kill: a fifth at once (inside the first segment's creation),
    some within its first records, most anywhere in the next 40 ms (a few dozen records)."""
    draw = rng.random()
    if draw < 0.2:
        return 0.0
    return rng.uniform(0, 0.003) if draw < 0.5 else rng.uniform(0, 0.04)


def kill_loop(folder: Path, device_key: Path, station_key: Path, kills: int, seed: int) -> KillRun:
    result = KillRun()
    rng = random.Random(seed)
    started = time.monotonic()
    for run in range(kills):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                writer(folder, device_key, station_key, seed * 1_000_000 + run, write)
            except BaseException:
                traceback.print_exc()
            os._exit(5)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            first = pipe.readline()
            if first.startswith(b"O"):
                time.sleep(kill_delay(rng))
            os.kill(pid, signal.SIGKILL)
            lines = [first, *pipe.read().splitlines()]
        _, status = os.waitpid(pid, 0)
        result.kills += 1
        for line in lines:
            kind, _, rest = line.decode().strip().partition(" ")
            if kind == "A":
                result.acknowledged.append(rest)
            elif kind == "F":
                result.reopen_failures.append(rest)
            elif kind == "E":
                result.unexpected_exits.append(f"append failed: {rest}")
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed and not first.startswith(b"F"):
            result.unexpected_exits.append(f"writer {run}: exit status {status:#x}")
    try:
        with EncryptedJournal.open(folder, device_key, station_key) as journal:
            journal.append({"type": "load", "id": "final"})
        result.acknowledged.append("final")
    except Exception as err:
        result.reopen_failures.append(f"final open: {err}")
    result.seconds = time.monotonic() - started
    return result


def torn_tails(folder: Path) -> tuple[int, int]:
    """(segments that say their predecessor was left open, of them with torn bytes set aside)."""
    left_open = torn = 0
    for _, path in segment_files(folder):
        with path.open("rb") as f:
            header = parse_header(memoryview(f.read(8192)))
        if not header.previous_sealed:
            left_open += 1
            torn += header.previous_torn_bytes > 0
    return left_open, torn


def run_driver(folder: Path, device_key: Path, station_key: Path, kills: int, seed: int) -> KillRun:
    """Run the kill loop in a fresh process (forking from a test runner's process is not safe)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tests.agent.journal.power_cut"),
            *(str(folder), str(device_key), str(station_key), "--kills", str(kills), "--seed", str(seed)),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or done.stderr.strip():
        raise AssertionError(f"driver exit {done.returncode}: {done.stderr}")
    return KillRun(**json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("device_key", type=Path)
    parser.add_argument("station_key", type=Path)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run = kill_loop(args.folder, args.device_key, args.station_key, args.kills, args.seed)
    print(json.dumps(asdict(run)))


if __name__ == "__main__":
    main()
