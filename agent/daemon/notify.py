"""systemd notifications (READY, STATUS, WATCHDOG, STOPPING) over NOTIFY_SOCKET, no library.

Example::

    notifier = SystemdNotifier.from_environment()   # does nothing outside systemd
    notifier.send("READY=1", "STATUS=ready, 1 filter")
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None

    @classmethod
    def from_environment(cls) -> SystemdNotifier:
        address = os.environ.get("NOTIFY_SOCKET")
        watchdog = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        usec = int(watchdog) if watchdog and watchdog.isdigit() else None
        if watchdog_pid and watchdog_pid.isdigit() and int(watchdog_pid) != os.getpid():
            usec = None
        return cls(address, usec)

    def send(self, *lines: str) -> bool:
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(lines).encode())
        except OSError:
            return False
        return True
