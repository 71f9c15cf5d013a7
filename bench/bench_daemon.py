"""Daemon benchmarks (issue 5): start to READY, plug to first light, resident memory.

Run as root with udevd running: ``.venv/bin/python bench/bench_daemon.py [--repeats 10]``.

1. Start to READY: ``python -m agent.cli agent --config X`` as a subprocess with ``NOTIFY_SOCKET``
   pointing at our own AF_UNIX datagram socket; the time from just before the process is started to
   the "READY=1" datagram. With no filter, a small filter and a 10M-entry md5 filter (random synthetic
   digests -> FilterBuilder -> write_filter, as bench/bench_filter.py; built once, cached under /tmp).
2. Plug to light: the daemon in this process (``build_daemon``, mock pin factory, plain journal), a
   small generated ext4 image with one known item attached with ``losetup`` and marked by a udev
   rule of our own; the times from ``losetup`` returning to the first signal away from "ready", to
   the red LED being lit, and to the verdict. Repeated, median and max, per ``devices.settle_seconds``.
3. Memory: VmRSS, VmHWM, RssAnon, RssFile and VmPeak of the daemon subprocess after READY (and, with
   the big filter, after a SIGHUP reload), and what the imports alone take. Target: under 150 MB.

Everything made (loop devices, mounts, the udev rule, temporary folders) is removed, also on failure;
only the cached 10M filter and its key stay (``--cache``). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from machine_info import machine_line

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import parse_config
from agent.daemon.cli import build_daemon
from agent.daemon.main import Daemon
from agent.demo.images import PartitionSpec, make_disk_image, missing_tools
from agent.lights.signals import Levels, Signal
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.digests import digest_path
from filters.importers import DigestBatch, DigestEntry
from filters.keys import generate_key_pair, load_private_key

RULE = Path("/run/udev/rules.d/61-fieldtriage-bench.rules")
MARK = "FIELDTRIAGE_BENCH"
IMAGE_PREFIX = "fieldtriage-bench-"  # the rule marks loop devices whose backing file has this in its name
RSS_TARGET_MB = 150
READY_TIMEOUT = 120.0
VERDICT_SIGNALS = {Signal.PRIORITY_MATCH, Signal.MATCH, Signal.NO_MATCH, Signal.INCOMPLETE}
IMPORTS = [
    "numpy",
    "cbor2",
    "blake3",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.ciphers.aead",
    "pyudev",
    "gpiozero",
    "gpiozero.pins.mock",
    "agent.daemon.cli",
]


def machine() -> str:
    return machine_line(
        f"numpy {np.__version__}",
        f"Linux {platform.release()}",
        f"load average {os.getloadavg()[0]:.2f} at start",
    )


def mb(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


def spread(values: list[float], unit: str = "s", digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} / {max(values):.{digits}f} {unit}"


# -- filters ---------------------------------------------------------------------------------------
def big_filter(cache: Path, entries: int) -> tuple[Path, Path]:
    """The cached ``entries``-entry md5 filter and the public key that signed it (built when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    path, public = cache / f"big-{entries}.ftf", cache / "provider.pub"
    if path.exists() and public.exists():
        return path, public
    for stale in cache.iterdir():
        stale.unlink()
    key, public = generate_key_pair(cache / "provider")
    print(f"building the {entries:,}-entry filter in {cache} (about a minute) ...", file=sys.stderr)
    started = time.perf_counter()
    rng = np.random.default_rng(entries)
    builder = FilterBuilder(name=f"bench {entries}")
    for start in range(0, entries, 1_000_000):
        block = rng.integers(0, 256, size=(min(1_000_000, entries - start), 16), dtype=np.uint8)
        builder.add_batch(DigestBatch("md5", "bench", "priority", [bytes(row) for row in block]))
    write_filter(path, builder.build_unsigned(), load_private_key(key))
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return path, public


def small_filter(folder: Path, key: Path, files: dict[str, bytes]) -> Path:
    """A filter of ``files`` (sample and blake3 digests, as the daemon tests build theirs)."""
    staging = folder / ".staging"
    staging.mkdir()
    builder = FilterBuilder(name="bench small")
    for name, data in files.items():
        (staging / name).write_bytes(data)
        for kind, digest in digest_path(staging / name, ["sample", "blake3"]).items():
            builder.add(DigestEntry(kind, digest, "bench-known", "priority", from_content=True))
    shutil.rmtree(staging)
    path = folder / "bench-small.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(key))
    return path


def known_files() -> dict[str, bytes]:
    return {f"known_{i}.jpg": os.urandom(60_000 + 5000 * i) for i in range(3)}


def kiosk_folders(root: Path, provider_pub: Path) -> Path:
    """Folders and an agent.toml for a one-bay kiosk that takes only our marked loop devices."""
    for name in ("filters", "trust", "run", "journal"):
        (root / name).mkdir(parents=True, exist_ok=True)
    shutil.copy(provider_pub, root / "trust" / "provider.pub")
    config = root / "agent.toml"
    config.write_text(
        f'[paths]\nfilters = "{root}/filters"\ntrust = "{root}/trust"\nruntime = "{root}/run"\n'
        f'journal = "{root}/journal"\ndevice_key = "{root}/device.key"\n'
        f'[devices]\nmatch = ["{MARK}=1"]\n'
        '[lights]\nbackend = "mock"\n'
        '[[bays]]\nname = "front"\nred = 17\namber = 27\ngreen = 22\nbuzzer = 23\n'
    )
    return config


# -- 1 and 3: the daemon as a subprocess -----------------------------------------------------------
def start_to_ready(
    config: Path, work: Path, reload: bool = False
) -> tuple[float, dict[str, int], dict[str, int] | None]:
    """Seconds from just before the process starts to READY=1, its /proc status right then, and
    with ``reload`` its status after a SIGHUP reloaded the filters (old and new both held for a while)."""
    address = work / "notify.sock"
    address.unlink(missing_ok=True)
    log_path = work / "agent.log"
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        log_path.open("w") as log,
    ):
        sock.bind(str(address))
        sock.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=str(address))
        env.pop("WATCHDOG_USEC", None)
        started = time.monotonic()
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "agent", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            while True:
                try:
                    message = sock.recv(4096).decode(errors="replace")
                except TimeoutError:
                    message = ""
                if "READY=1" in message.splitlines():
                    seconds = time.monotonic() - started
                    break
                if agent.poll() is not None or time.monotonic() - started > READY_TIMEOUT:
                    raise RuntimeError(f"the agent never sent READY=1:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.3)  # let the first status write and ticker settle before reading memory
            status = proc_status(agent.pid)
            reloaded = None
            if reload:
                agent.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + READY_TIMEOUT
                while log_path.read_text().count("filters in use") < 2:
                    if agent.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"no reload after SIGHUP:\n{log_path.read_text()[-2000:]}")
                    time.sleep(0.05)
                time.sleep(0.3)
                reloaded = proc_status(agent.pid)
            agent.terminate()
            if agent.wait(10) != 0:
                raise RuntimeError(f"the agent exited {agent.returncode}:\n{log_path.read_text()[-2000:]}")
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            address.unlink(missing_ok=True)
    return seconds, status, reloaded


def plain_python_start(repeats: int) -> tuple[list[float], list[float]]:
    """Seconds for ``python -c pass`` and for importing everything the daemon imports."""
    bare: list[float] = []
    imports: list[float] = []
    for _ in range(repeats):
        for code, into in (("pass", bare), ("import agent.daemon.cli, gpiozero.pins.mock", imports)):
            started = time.monotonic()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            into.append(time.monotonic() - started)
    return bare, imports


def import_memory() -> list[tuple[str, int]]:
    """VmRSS (kB) of a fresh interpreter, then after each import in turn (in a subprocess)."""
    code = (
        "import sys\n"
        "def rss():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmRSS:'):\n"
        "            return int(line.split()[1])\n"
        "print('python', rss())\n"
        "for name in sys.argv[1:]:\n"
        "    __import__(name)\n"
        "    print(name, rss())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *IMPORTS], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [(line.split()[0], int(line.split()[1])) for line in done.stdout.splitlines()]


def bench_start(
    work: Path, big: Path, big_pub: Path, entries: int, repeats: int
) -> tuple[list[dict[str, str]], list[tuple[str, int]], list[float], list[float]]:
    rows = []
    size = f"{big.stat().st_size / 1e6:.1f} MB file"
    cases = ["no filter", "small filter (3 items, 6 entries)", f"{entries:,}-entry md5 filter ({size})"]
    for index, label in enumerate(cases):
        root = work / f"start{index}"
        if index == 1:
            key, public = generate_key_pair(work / "small-provider")
            config = kiosk_folders(root, public)
            small_filter(root / "filters", key, known_files())
        else:
            config = kiosk_folders(root, big_pub)
        if index == 2:
            (root / "filters" / big.name).symlink_to(big)
        times, statuses, reloads = [], [], []
        for _ in range(repeats):
            seconds, status, reloaded = start_to_ready(config, work, reload=index == 2)
            times.append(seconds)
            statuses.append(status)
            if reloaded is not None:
                reloads.append(reloaded)
        for what, found in (("", statuses), (" after a SIGHUP reload", reloads)):
            if not found:
                continue
            rss = [s["VmRSS"] for s in found]
            median_status = found[rss.index(sorted(rss)[len(rss) // 2])]
            rows.append(
                {
                    "case": label + what,
                    "start to READY (median / max)": spread(times) if not what else "",
                    "VmRSS MiB": mb(median_status["VmRSS"]),
                    "VmHWM MiB": mb(median_status["VmHWM"]),
                    "RssAnon MiB": mb(median_status.get("RssAnon", 0)),
                    "RssFile MiB": mb(median_status.get("RssFile", 0)),
                    "VmPeak MiB": mb(median_status["VmPeak"]),
                }
            )
        print(f"done start: {label}", file=sys.stderr)
    bare, imports = plain_python_start(repeats)
    return rows, import_memory(), bare, imports


# -- 2: plug to light, the daemon in this process --------------------------------------------------
@contextmanager
def udev_rule() -> Iterator[None]:
    RULE.parent.mkdir(parents=True, exist_ok=True)
    RULE.write_text(
        f'SUBSYSTEM=="block", KERNEL=="loop*", ATTR{{loop/backing_file}}=="*{IMAGE_PREFIX}*", '
        f'ENV{{{MARK}}}="1"\n'
    )
    try:
        subprocess.run(["udevadm", "control", "--reload"], check=True)
        yield
    finally:
        RULE.unlink(missing_ok=True)
        subprocess.run(["udevadm", "control", "--reload"], check=False)


class Recorder:
    """Times of the bay's signal changes (``BayLights.show``) and LED levels (the backend's ``set``)."""

    def __init__(self, daemon: Daemon) -> None:
        bay = daemon.bays[0]
        self.bay = bay
        self.signals: list[tuple[float, Signal]] = []
        self.levels: list[tuple[float, Levels]] = []
        self.lock = threading.Lock()
        show, backend_set = bay.lights.show, bay.lights.backend.set

        def recording_show(signal: Signal, progress: float | None = None) -> None:
            changed = signal is not bay.lights.signal
            show(signal, progress)
            if changed:
                with self.lock:
                    self.signals.append((time.monotonic(), signal))

        def recording_set(levels: Levels, label: str = "") -> None:
            backend_set(levels, label)
            with self.lock:
                self.levels.append((time.monotonic(), levels))

        bay.lights.show = recording_show  # type: ignore[method-assign]
        bay.lights.backend.set = recording_set  # type: ignore[method-assign]

    def first_signal(self, since: float, accept: Callable[[Signal], bool]) -> float | None:
        with self.lock:
            return next((t - since for t, s in self.signals if t >= since and accept(s)), None)

    def wait_red(self, since: float, seconds: float = 5) -> None:
        """The LED follows the signal at the lights ticker's next step (every 50 ms)."""
        deadline = time.monotonic() + seconds
        while self.first_red(since) is None and time.monotonic() < deadline:
            time.sleep(0.005)

    def first_red(self, since: float) -> float | None:
        with self.lock:
            return next((t - since for t, lv in self.levels if t >= since and lv.red), None)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def detach(loop: str) -> None:
    # BLKROSET outlives a detach: undo it, or the next user of this loop device gets a read-only disk
    subprocess.run(["blockdev", "--setrw", loop], capture_output=True, check=False)
    subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def leftover_mounts(root: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if str(root) in line.split()[4]]


def bench_plug(work: Path, settle: float, repeats: int, image: Path, small_key: Path) -> dict[str, str]:
    root = work / f"plug-{settle}"
    config_path = kiosk_folders(root, small_key.with_suffix(".pub"))
    small_filter(root / "filters", small_key, KNOWN)
    raw = {
        "paths": {name: str(root / name) for name in ("filters", "trust", "journal")}
        | {"runtime": str(root / "run"), "device_key": str(root / "device.key")},
        "devices": {"match": [f"{MARK}=1"], "settle_seconds": settle},
        "lights": {"backend": "mock"},
        "bays": [{"name": "front", "red": 17, "amber": 27, "green": 22, "buzzer": 23}],
    }
    config = parse_config(raw, str(config_path))
    from gpiozero.pins.mock import MockFactory

    daemon = build_daemon(config, pin_factory=MockFactory())
    recorder = Recorder(daemon)
    bay = recorder.bay
    thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    loops: list[str] = []
    scanning: list[float] = []
    red_signal: list[float] = []
    red_led: list[float] = []
    verdict: list[float] = []
    losetup: list[float] = []
    verdicts: set[str] = set()
    try:
        wait_for(lambda: daemon.state == "running" and bay.lights.signal is Signal.READY, "the daemon")
        for _ in range(repeats):
            time.sleep(0.5)  # quiet before the plug
            called = time.monotonic()
            done = subprocess.run(
                ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
            )
            plugged = time.monotonic()
            loops.append(done.stdout.strip())
            losetup.append(plugged - called)
            wait_for(lambda: bay.verdict is not None and bay.worker is None, "the verdict")
            recorder.wait_red(plugged)
            times = (
                recorder.first_signal(plugged, lambda s: s is not Signal.READY),
                recorder.first_signal(plugged, lambda s: s is Signal.SCANNING_PRIORITY),
                recorder.first_red(plugged),
                recorder.first_signal(plugged, lambda s: s in VERDICT_SIGNALS),
            )
            if any(t is None for t in times):
                raise RuntimeError(f"missing a light change after the plug: {times}, {bay.lights.shown}")
            for into, value in zip((scanning, red_signal, red_led, verdict), times, strict=True):
                assert value is not None
                into.append(value)
            verdicts.add(str(bay.verdict))
            detach(loops.pop())
            wait_for(lambda: bay.device is None and bay.lights.signal is Signal.READY, "ready after unplug")
    finally:
        daemon.request_stop()
        thread.join(15)
        for loop in loops:
            detach(loop)
    left = leftover_mounts(root)
    if left:
        raise RuntimeError(f"mounts left behind: {left}")
    return {
        "settle_seconds": f"{settle}",
        "runs": str(repeats),
        "losetup call": spread(losetup),
        "(a) to scanning signal": spread(scanning),
        "(b) to red signal": spread(red_signal),
        "(b) to red LED lit": spread(red_led),
        "(c) to verdict": spread(verdict),
        "verdict": ", ".join(sorted(verdicts)),
    }


KNOWN = known_files()


def plug_image(work: Path) -> Path:
    files = {f"Documents/file_{i:03}.bin": os.urandom(100_000) for i in range(40)}
    files["DCIM/Camera/IMG_0001.jpg"] = KNOWN["known_1.jpg"]
    return make_disk_image(work / f"{IMAGE_PREFIX}hit.img", "dos", [PartitionSpec("ext4", files)])


# -- report ----------------------------------------------------------------------------------------
def table(rows: list[dict[str, str]]) -> None:
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(row[h] for h in headers) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000, help="size of the big filter")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fieldtriage-bench-cache"))
    parser.add_argument("--start-repeats", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="plugs per settle setting")
    parser.add_argument("--settle", type=float, nargs="+", default=[0.4, 0.1], help="devices.settle_seconds")
    parser.add_argument("--skip-plug", action="store_true", help="only start time and memory")
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    big, big_pub = big_filter(args.cache, args.entries)
    with tempfile.TemporaryDirectory(prefix="fieldtriage-bench-daemon-") as tmp:
        work = Path(tmp)
        rows, imports, bare, with_imports = bench_start(work, big, big_pub, args.entries, args.start_repeats)
        print(f"### Start to READY and memory after READY ({args.start_repeats} starts each, median / max)\n")
        table(rows)
        for row in rows[2:]:
            verdicts = []
            for name in ("VmRSS", "VmHWM"):
                value = row[f"{name} MiB"]
                verdicts.append(f"{name} {value} MiB {'met' if float(value) < RSS_TARGET_MB else 'MISSED'}")
            print(f"target under {RSS_TARGET_MB} MB, {row['case']}: " + ", ".join(verdicts) + "\n")
        print(
            f"`python -c pass`: {spread(bare)}; `python -c 'import agent.daemon.cli, gpiozero.pins.mock'`: "
            f"{spread(with_imports)} (median / max)\n"
        )
        print("### VmRSS of a fresh interpreter after each import in turn\n")
        previous = 0
        import_rows = []
        for name, kib in imports:
            import_rows.append({"import": f"`{name}`", "VmRSS MiB": mb(kib), "added MiB": mb(kib - previous)})
            previous = kib
        table(import_rows)
        if args.skip_plug:
            return
        problem = None
        if os.geteuid() != 0:
            problem = "needs root (loop devices, mounts)"
        elif subprocess.run(["udevadm", "control", "--ping"], capture_output=True).returncode != 0:
            problem = "needs a running udevd (/lib/systemd/systemd-udevd --daemon)"
        elif missing_tools(["ext4"]):
            problem = "needs mkfs.ext4"
        if problem:
            print(f"plug to light: skipped, {problem}")
            return
        image = plug_image(work)
        small_key, _ = generate_key_pair(work / "plug-provider")
        plug_rows = []
        with udev_rule():
            for settle in args.settle:
                plug_rows.append(bench_plug(work, settle, args.repeats, image, small_key))
                print(f"done plug: settle {settle}", file=sys.stderr)
        print(
            "### Plug (losetup returned) to lights, ext4 image of 40 files + 1 known item, "
            "small filter (median / max)\n"
        )
        table(plug_rows)


if __name__ == "__main__":
    main()
