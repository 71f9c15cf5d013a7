"""The kiosk image booted under QEMU, as the system test drives it.

QMP is the hardware: USB sticks plugged into and pulled from the xhci root ports (``device_add`` /
``device_del``), the write counts of every evidence disk (``query-blockstats``), the power (SIGKILL
of QEMU is a power cut). The QEMU guest agent is the engineer's eyes inside: commands, files, the
lights as the gpio-sim lines record them.

Example (root)::

    with Guest(image_folder, work) as guest:
        guest.boot()
        stick = guest.plug(Path("stick.img"), port=1)
        phone = guest.plug_phone(Path("phone-tree"), port=2)  # a virtual MTP phone (usb-mtp)
        ...
        guest.unplug(phone)
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

# bay -> (red, amber, green) BCM lines, as image-build/rootfs-test/etc/fieldtriage/agent.toml wires them
BAY_LINES = {"front": (17, 27, 22), "back": (5, 6, 13)}
BOOT_TIMEOUT = 300.0
# what a phone's main storage calls itself (Android); usb-mtp reports its ``desc`` as the storage's
PHONE_STORAGE = "Internal shared storage"
FILE_CHUNK = 1 << 20  # bytes per guest-file-read / guest-file-write call


class GuestError(Exception):
    pass


class GuestAgent:
    """The QEMU guest agent's JSON protocol over its virtio-serial socket (no greeting; a sync first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.buffer = b""

    def connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._open()
                self.call("guest-ping", timeout=5)
                return
            except (OSError, GuestError, TimeoutError) as err:
                self.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"guest agent not answering: {err}") from err
                time.sleep(1)

    def _open(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(os.fspath(self.path))
        token = int(time.monotonic() * 1000) % 2**31
        self.buffer = b""
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": token}})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # skip what a previous connection left unread
            reply = self._receive(deadline - time.monotonic())
            if reply.get("return") == token:
                return
        raise GuestError("guest agent did not sync")

    def _send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self.sock is not None
        self.sock.settimeout(max(0.1, timeout))
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GuestError("guest agent closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        line = line.lstrip(b"\xff")
        reply: dict[str, Any] = json.loads(line) if line.strip() else {}
        return reply

    def call(self, command: str, timeout: float = 30, **arguments: Any) -> Any:
        self._send({"execute": command, **({"arguments": arguments} if arguments else {})})
        reply = self._receive(timeout)
        if "error" in reply:
            raise GuestError(f"{command}: {reply['error'].get('desc')}")
        return reply.get("return")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Plugged:
    """A stick (``image`` is its disk image, ``node`` its QMP block node) or a phone (``image`` is
    the folder usb-mtp exports; no block node: ``node`` is empty)."""

    device_id: str
    node: str
    image: Path
    port: int

    @property
    def phone(self) -> bool:
        return not self.node


@dataclass
class Result:
    status: int
    out: str
    err: str


class Guest:
    """One kiosk: its disk (a copy of the built image), QEMU, QMP and the guest agent."""

    def __init__(self, image_folder: Path, work: Path, disk: Path, accel: str = "tcg") -> None:
        self.image_folder = image_folder
        self.work = work
        self.disk = disk
        self.accel = accel
        self.qmp_path = work / "qmp.sock"
        self.qga_path = work / "qga.sock"
        self.serial_path = work / "serial.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.qmp: QEMUMonitorProtocol | None = None
        self.agent = GuestAgent(self.qga_path)
        self.plugged: dict[str, Plugged] = {}
        self.boots = 0
        self.plugs = 0

    # ---- power ----------------------------------------------------------------------------------

    def boot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Start the machine; return the seconds until the agent's unit is active (READY=1)."""
        for path in (self.qmp_path, self.qga_path):
            path.unlink(missing_ok=True)
        self.boots += 1
        started = time.monotonic()
        argv = [
            "qemu-system-x86_64", "-M", "q35", "-accel", self.accel, "-cpu", "max", "-m", "2048", "-smp", "2",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(self.image_folder / "vmlinuz"), "-initrd", str(self.image_folder / "initrd.img"),
            "-append", "console=ttyS0 root=LABEL=FTROOT ro usb-storage.delay_use=0 panic=-1",
            "-drive", f"file={self.disk},if=virtio,format=raw,cache=writeback",
            "-chardev", f"file,id=serial0,path={self.serial_path}", "-serial", "chardev:serial0",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-device", "qemu-xhci,id=xhci,p2=4,p3=4",
            "-chardev", f"socket,path={self.qga_path},server=on,wait=off,id=qga0",
            "-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            "-nic", "none",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = started + timeout
        while not self.qmp_path.exists():
            self._check_running()
            if time.monotonic() > deadline:
                raise GuestError("QEMU made no QMP socket")
            time.sleep(0.1)
        self.qmp = QEMUMonitorProtocol(os.fspath(self.qmp_path))
        self.qmp.connect()
        self.agent.connect(max(10.0, deadline - time.monotonic()))
        while True:
            shown = self.sh("systemctl show -p ActiveState -p NRestarts fieldtriage-agent.service").out
            state = dict(line.split("=", 1) for line in shown.split())
            if state.get("ActiveState") == "active":
                return time.monotonic() - started
            if state.get("NRestarts", "0") != "0" or time.monotonic() > deadline:
                raise GuestError(
                    f"fieldtriage-agent does not start ({shown.strip()}):\n{self.journal_tail()}"
                )
            time.sleep(1)

    def _check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise GuestError(f"QEMU exited ({self.process.returncode}): {err.strip()[-500:]}")

    def power_cut(self) -> None:
        """Pull the plug: QEMU killed, nothing flushed, nothing shut down."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._forget()

    def shutdown(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        try:
            self.agent.call("guest-shutdown", mode="powerdown", timeout=5)
        except (GuestError, OSError):
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._forget()

    def _forget(self) -> None:
        self.agent.close()
        if self.qmp is not None:
            try:
                self.qmp.close()
            except Exception:
                pass
        self.qmp = None
        self.process = None
        self.plugged.clear()

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.power_cut()

    # ---- inside ---------------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float = 120) -> Result:
        pid = self.agent.call("guest-exec", path=argv[0], arg=argv[1:], **{"capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.agent.call("guest-exec-status", pid=pid)
            if status["exited"]:
                return Result(
                    status.get("exitcode", -1),
                    base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
                    base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
                )
            if time.monotonic() > deadline:
                raise GuestError(f"{argv[0]} did not finish in {timeout} s")
            time.sleep(0.1)

    def sh(self, command: str, timeout: float = 120) -> Result:
        return self.run(["/bin/sh", "-c", command], timeout)

    def write_file(self, path: str, data: bytes, mode: str = "w") -> None:
        """A file inside the guest (a writable place: /run, /tmp), through the guest agent."""
        handle = self.agent.call("guest-file-open", path=path, mode=f"{mode}b")
        try:
            for start in range(0, len(data), FILE_CHUNK):
                part = base64.b64encode(data[start : start + FILE_CHUNK]).decode()
                arguments: dict[str, Any] = {"handle": handle, "buf-b64": part}
                self.agent.call("guest-file-write", **arguments)
        finally:
            self.agent.call("guest-file-close", handle=handle)

    def read_file(self, path: str) -> bytes:
        """A file inside the guest, whole, through the guest agent."""
        handle = self.agent.call("guest-file-open", path=path, mode="rb")
        parts = []
        try:
            while True:
                read = self.agent.call("guest-file-read", handle=handle, count=FILE_CHUNK)
                parts.append(base64.b64decode(read.get("buf-b64", "")))
                if read.get("eof") or not read.get("count"):
                    return b"".join(parts)
        finally:
            self.agent.call("guest-file-close", handle=handle)

    def in_agent_namespace(self, command: str) -> Result:
        """A command in the agent's mount namespace (its mounts are invisible from the host's)."""
        return self.sh(f'nsenter -t "$(systemctl show -p MainPID --value fieldtriage-agent)" -m {command}')

    def journal_tail(self, lines: int = 60) -> str:
        try:
            return self.sh(f"journalctl -b --no-pager -n {lines} -u fieldtriage-agent").out
        except (GuestError, OSError) as err:
            return f"(no journal: {err})"

    def status(self) -> dict[str, Any]:
        """The agent's status file (what ``fieldtriage agent status`` shows)."""
        done = self.sh("cat /run/fieldtriage/status.json")
        if done.status != 0:
            raise GuestError(f"no status file: {done.err.strip()}")
        status: dict[str, Any] = json.loads(done.out)
        return status

    def light_history(self) -> list[tuple[float, dict[int, int]]]:
        """Every change of the GPIO lines since the recorder started: (guest monotonic s, levels)."""
        text = self.sh("cat /run/fieldtriage-test/lights.log").out
        history = []
        for line in text.splitlines():
            moment, *pairs = line.split()
            history.append((float(moment), {int(k): int(v) for k, v in (p.split("=") for p in pairs)}))
        return history

    def recorder_state(self) -> str:
        """What the GPIO recorder is doing, for a failure message: is it running, its last lines
        and log size, and the guest's clock beside them."""
        return self.sh(
            "systemctl is-active fieldtriage-test-lights; journalctl -u fieldtriage-test-lights -n 8 -q"
            " --no-pager; wc -c /run/fieldtriage-test/lights.log; tail -n 2 /run/fieldtriage-test/lights.log;"
            " cat /proc/uptime"
        ).out

    def bay_lights(self, bay: str) -> list[tuple[float, tuple[int, int, int]]]:
        """The (red, amber, green) levels of one bay at each change."""
        lines = BAY_LINES[bay]
        out: list[tuple[float, tuple[int, int, int]]] = []
        for moment, levels in self.light_history():
            state = (levels[lines[0]], levels[lines[1]], levels[lines[2]])
            if not out or out[-1][1] != state:
                out.append((moment, state))
        return out

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise GuestError(f"timed out waiting for {what}\n{self.journal_tail()}")
            time.sleep(0.5)

    def bay(self, name: str) -> dict[str, Any]:
        bays: list[dict[str, Any]] = [b for b in self.status()["bays"] if b["name"] == name]
        (bay,) = bays
        return bay

    # ---- hardware -------------------------------------------------------------------------------

    def _qmp(self, command: str, **arguments: Any) -> Any:
        assert self.qmp is not None
        reply = self.qmp.cmd_raw(command, arguments or None)
        if "error" in reply:
            raise GuestError(f"{command}: {reply['error'].get('desc')}")
        return reply.get("return")

    def plug(self, image: Path, port: int, serial: str = "", read_only: bool = False) -> Plugged:
        self.plugs += 1  # never reused: QEMU keeps a deleted node's name until it is gone
        number = self.plugs
        node, device_id = f"stick{number}", f"usb{number}"
        self._qmp(
            "blockdev-add", **{"node-name": node, "driver": "raw", "read-only": read_only,
                               "file": {"driver": "file", "filename": str(image)}},
        )  # fmt: skip
        self._qmp("device_add", driver="usb-storage", bus="xhci.0", port=str(port), drive=node,
                  id=device_id, serial=serial or f"FT{number:06d}", removable=True)  # fmt: skip
        plugged = Plugged(device_id, node, image, port)
        self.plugged[device_id] = plugged
        return plugged

    def plug_phone(self, rootdir: Path, port: int, desc: str = PHONE_STORAGE, serial: str = "") -> Plugged:
        """A phone: QEMU's usb-mtp, a virtual MTP device exporting ``rootdir`` as one storage called
        ``desc``, read-only (it refuses uploads, new folders and deletes; a refused upload or folder
        leaves it stalled until it is plugged again)."""
        self.plugs += 1
        number = self.plugs
        device_id = f"phone{number}"
        self._qmp("device_add", driver="usb-mtp", bus="xhci.0", port=str(port), rootdir=str(rootdir),
                  readonly=True, desc=desc, serial=serial or f"FTP{number:05d}", id=device_id)  # fmt: skip
        plugged = Plugged(device_id, "", rootdir, port)
        self.plugged[device_id] = plugged
        return plugged

    def plug_keyboard(self, port: int) -> Plugged:
        """A USB keyboard, QEMU's usb-kbd: what a barcode scanner is to the guest (no block node, no
        folder: ``unplug`` only removes the device)."""
        self.plugs += 1
        device_id = f"kbd{self.plugs}"
        self._qmp("device_add", driver="usb-kbd", bus="xhci.0", port=str(port), id=device_id)
        plugged = Plugged(device_id, "", Path("usb-kbd"), port)
        self.plugged[device_id] = plugged
        return plugged

    def type_keys(self, text: str, enter: bool = True, pause: float = 0.06) -> None:
        """``text`` (letters, digits, space, ``-./_``) and Enter, one character per QMP
        ``input-send-event``, ``pause`` seconds per key event: a usb-kbd queues at most 16 key
        events, one of which each poll of the guest takes, and drops what comes beyond (under TCG
        on a loaded host the guest took fewer than 30 a second). With no display, QEMU gives key
        events to the keyboard added last that is still plugged in: the command's ``device``
        argument names a display's console, and this machine has none."""
        for ch in [*text, "\n"] if enter else list(text):
            keys = _qcodes(ch)
            events = [_key(k, True) for k in keys] + [_key(k, False) for k in reversed(keys)]
            self._qmp("input-send-event", events=events)
            time.sleep(pause * len(events))

    def unplug(self, plugged: Plugged) -> None:
        self._qmp("device_del", id=plugged.device_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            devices = {d.get("id") for d in self._usb_devices()}
            if plugged.device_id not in devices:
                break
            time.sleep(0.2)
        if not plugged.phone:  # a phone exports a folder: no block node to delete
            try:
                self._qmp("blockdev-del", **{"node-name": plugged.node})
            except GuestError:
                time.sleep(1)
                self._qmp("blockdev-del", **{"node-name": plugged.node})
        self.plugged.pop(plugged.device_id, None)

    def _usb_devices(self) -> list[dict[str, Any]]:
        path = "/machine/peripheral"
        found = self._qmp("qom-list", path=path)
        return [{"id": entry["name"]} for entry in found if entry["type"].startswith("child<")]

    def writes(self, plugged: Plugged) -> int:
        """Write requests the stick received since it was plugged (QEMU's own count). A phone has no
        block node: compare its folder before and after (``phone_trees.snapshot``)."""
        if plugged.phone:
            raise GuestError(f"{plugged.device_id} is a phone: no write counter")
        for entry in self._qmp("query-blockstats", **{"query-nodes": True}):
            if entry.get("node-name") == plugged.node:
                return int(entry["stats"]["wr_operations"]) + int(entry["stats"]["wr_bytes"])
        raise GuestError(f"no block stats for {plugged.node}")


QCODE_NAMES = {" ": "spc", "-": "minus", ".": "dot", "/": "slash", "\n": "ret"}


def _qcodes(ch: str) -> list[str]:
    """QEMU's key names (qcodes) that type ``ch`` on a US keyboard, modifier first."""
    if ch.isascii() and ch.isalpha():
        return ["shift", ch.lower()] if ch.isupper() else [ch]
    if ch.isascii() and ch.isdigit():
        return [ch]
    if ch == "_":
        return ["shift", "minus"]
    if ch in QCODE_NAMES:
        return [QCODE_NAMES[ch]]
    raise GuestError(f"no key types {ch!r}")


def _key(qcode: str, down: bool) -> dict[str, Any]:
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}
