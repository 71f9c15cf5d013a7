"""The status file: every bay's state, written atomically as JSON under the runtime folder, and
what ``fieldtriage agent status`` makes of it for the engineer and for monitoring.

The daemon rewrites the file at least every few seconds while its loop runs (the heartbeat), and
once more when it stops cleanly (``stopped_status``: state ``stopped``, no filter in use, every bay
off). ``agent_status`` does not take the file's word for it: the agent is ``ready``, in ``fault``
(no valid filter, the journal cannot be written, a bay showing the fault signal) or ``not
running`` (stopped; its process gone, or another program under its pid, after ``kill -9`` or a
crash; a status not rewritten for ``stale_after`` seconds: hung), with the reason; the text
(``format_status``) and ``--json`` show the same document. Exit status: 0 ready, 1 fault, 3 not
running (``EXIT_STATUS``). Per filter its expiry, with a warning line when it expires soon.

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "status.json"
    >>> write_status(path, {"state": "ready", "bays": []})
    >>> read_status(path)["state"]
    'ready'
    >>> report = agent_status(path, stale_after=10.0)   # (no such pid in this file: not running)
    >>> report["state"], EXIT_STATUS[report["state"]]
    ('not running', 3)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filters.errors import FieldtriageError, printable
from filters.safe_files import read_regular_file

MAX_STATUS_BYTES = 16 << 20
READY, FAULT, NOT_RUNNING = "ready", "fault", "not running"
EXIT_STATUS = {READY: 0, FAULT: 1, NOT_RUNNING: 3}
FAULT_SIGNALS = ("fault", "priority_match_unrecorded")  # a bay asking the officer to call support
PROC = Path("/proc")


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a reader sees the old or the new file, never half of one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    data = json.dumps(status, indent=2, sort_keys=True).encode()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read_status(path: Path) -> dict[str, Any]:
    if not os.path.lexists(path):
        raise FieldtriageError(path, "no status file: is the agent running?")
    data = read_regular_file(path, MAX_STATUS_BYTES, FieldtriageError, "a status file")
    try:
        loaded = json.loads(data)
    except ValueError as err:
        raise FieldtriageError(path, f"cannot read the status file: {err}") from err
    if not isinstance(loaded, dict):
        raise FieldtriageError(path, "cannot read the status file: not a JSON object")
    return loaded


def stopped_status(status: dict[str, Any]) -> dict[str, Any]:
    """The last status of a daemon that stopped cleanly: nothing in use, every bay off."""
    bays = [
        {"name": b.get("name"), "port": b.get("port"), "phase": "stopped", "signal": "off"}
        for b in status.get("bays", [])
    ]
    return status | {
        "state": "stopped",
        "fault": None,
        "filters": [],
        "filter_warnings": [],
        "bays": bays,
    }


def is_agent_command(argv: Sequence[str]) -> bool:
    """Whether a command line is the kiosk daemon (``fieldtriage agent [run] ...``, also as
    ``python -m agent.cli agent ...``), not ``agent status`` or another program."""
    for index, arg in enumerate(argv):
        if arg == "agent.cli" or os.path.basename(arg) == "fieldtriage":
            rest = argv[index + 1 :]
            return "agent" in rest and not {"status", "provision"} & set(rest)
    return False


def process_problem(pid: int, proc: Path = PROC) -> str | None:
    """Why ``pid`` is not a running kiosk daemon, or None when it is (``/proc/PID``: alive, not a
    zombie, and its command line is ``fieldtriage agent``)."""
    gone = f"process {pid} is gone: the agent ended without stopping (killed or crashed)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return gone
    except PermissionError:
        pass  # it exists (another user's)
    except (OverflowError, ValueError):
        return f"{pid} is not a process id"
    folder = proc / str(pid)
    try:
        stat_line = (folder / "stat").read_bytes()
        cmdline = (folder / "cmdline").read_bytes()
    except FileNotFoundError:
        return gone
    except OSError:
        return None  # cannot look closer: alive is all that is known
    fields = stat_line.rpartition(b")")[2].split()
    if fields and fields[0] in (b"Z", b"X"):
        return f"process {pid} has ended: the agent ended without stopping (killed or crashed)"
    argv = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    if not is_agent_command(argv):
        command = " ".join(argv)[:100] or "no command line"
        return f"process {pid} is not the agent ({command}): the agent ended and its pid was reused"
    return None


def assess(
    status: dict[str, Any],
    age_s: float,
    stale_after: float,
    check_process: Callable[[int], str | None] = process_problem,
) -> tuple[str, str | None]:
    """``(state, reason)`` of the agent that wrote ``status`` ``age_s`` seconds ago."""
    written = status.get("state")
    if written in ("stopped", "stopping"):
        return NOT_RUNNING, f"the agent stopped at {status.get('updated', '?')}"
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return NOT_RUNNING, f"the status file names no process (pid {pid!r})"
    problem = check_process(pid)
    if problem is not None:
        return NOT_RUNNING, problem
    if age_s > stale_after:
        return NOT_RUNNING, (
            f"process {pid} has not written its status for {age_s:.0f} s (more than {stale_after:.0f} s): "
            "the agent hangs"
        )
    if written != "running":
        return NOT_RUNNING, f"the agent is {written}"
    if status.get("fault"):
        return FAULT, str(status["fault"])
    for bay in status.get("bays", []):
        if bay.get("signal") in FAULT_SIGNALS:
            return FAULT, f"bay {bay.get('name')}: {bay.get('problem') or 'shows the fault signal'}"
    return READY, None


def agent_status(
    path: Path,
    stale_after: float,
    *,
    now: Callable[[], float] = time.time,
    check_process: Callable[[int], str | None] = process_problem,
) -> dict[str, Any]:
    """What ``fieldtriage agent status`` shows (as text or JSON): the status file's document with
    ``state`` (``ready``, ``fault``, ``not running``), ``reason``, ``agent_state`` (what the file
    says), ``status_age_s``; when not running, no filter in use and no bay. Raises
    ``FieldtriageError`` for a status file that cannot be read."""
    if not os.path.lexists(path):
        return {
            "state": NOT_RUNNING,
            "reason": "no status file: the agent has not run since the runtime folder was made",
            "agent_state": None,
            "status_file": str(path),
            "status_age_s": None,
            "filters": [],
            "bays": [],
        }
    status = read_status(path)
    age = round(max(0.0, now() - os.stat(path).st_mtime), 1)
    state, reason = assess(status, age, stale_after, check_process)
    report = status | {
        "state": state,
        "reason": reason,
        "agent_state": status.get("state"),
        "status_file": str(path),
        "status_age_s": age,
    }
    if state == NOT_RUNNING:
        report |= {"fault": None, "filters": [], "filter_warnings": [], "bays": []}
    elif "filter_warnings" not in status:
        report["filter_warnings"] = [  # (a daemon that lists the filters' expiry, not the warnings)
            f"{f.get('file')} ({f.get('name')}): expires{_expiry(f).removeprefix('; expires')}"
            for f in status.get("filters", [])
            if f.get("expiring_soon")
        ]
    return report


def _expiry(f: dict[str, Any]) -> str:
    if "expires" not in f:
        return ""
    if f["expires"] is None:
        return "; never expires"
    days = f.get("expires_in_days")
    left = "" if days is None else ", in 1 day" if days == 1 else f", in {days} days"
    return f"; expires {f['expires']}{left}"


def format_status(report: dict[str, Any]) -> str:
    """``agent_status``'s document as text (a raw status file's works too): the same facts."""
    state = report.get("state", "?")
    details = [f"pid {report.get('pid', '?')}"]
    if state != NOT_RUNNING and report.get("started"):
        details.append(f"since {report['started']}")
    if report.get("status_age_s") is not None:
        details.append(f"status written {report['status_age_s']} s ago")
    lines = [f"agent: {state} ({', '.join(details)})"]
    kiosk = report.get("kiosk")
    if isinstance(kiosk, dict) and (kiosk.get("name") or kiosk.get("location")):
        where = f" ({kiosk['location']})" if kiosk.get("location") else ""
        lines.append(f"kiosk: {kiosk.get('name') or '(no name)'}{where}")
    if report.get("reason"):
        lines.append(f"{state}: {report['reason']}")
    elif report.get("fault"):
        lines.append(f"fault: {report['fault']}")
    filters = report.get("filters", [])
    if state == NOT_RUNNING:
        lines.append("filters: none in use (the agent is not running)")
    elif "filters" in report:
        lines.append(f"filters: {len(filters)} in use")
    for f in filters:
        entries = f.get("entries", 0)
        counted = f"{entries:,} entr{'y' if entries == 1 else 'ies'}"
        lines.append(f"  {f.get('name')} ({counted}, {f.get('file')}{_expiry(f)})")
    for warning in report.get("filter_warnings", []):
        lines.append(f"  WARNING: {warning}")
    for problem in report.get("filter_problems", []) if state != NOT_RUNNING else []:
        lines.append(f"  skipped: {problem}")
    journal = report.get("journal")
    if isinstance(journal, dict) and state != NOT_RUNNING:
        healthy = journal.get("healthy", True)
        lines.append(f"journal: {'healthy' if healthy else 'FAULT: ' + str(journal.get('error'))}")
    for bay in report.get("bays", []):
        device = bay.get("device") or {}
        name = (
            " ".join(x for x in (device.get("vendor"), device.get("model")) if x)
            or device.get("devnode")
            or "-"
        )
        progress = bay.get("progress")
        shown = f" {progress * 100:.0f}%" if isinstance(progress, float) else ""
        lines.append(
            f"bay {bay.get('name')}: {bay.get('phase')}{shown}  lights {bay.get('signal')}  device {name}"
            + (f"  verdict {bay['verdict']}" if bay.get("verdict") else "")
            + (", empty (0 files)" if bay.get("empty") and bay.get("verdict") == "no_match" else "")
            + ("  (alarm silenced)" if bay.get("silenced") else "")
        )
        if bay.get("problem"):
            lines.append(f"  problem: {bay['problem']}")
    return "\n".join(printable(line) for line in lines)
