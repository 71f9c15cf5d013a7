"""The status file: every bay's state, written atomically as JSON under the runtime folder.

``fieldtriage agent status`` prints it for the engineer who maintains the box: the journal's health
(its last error while it cannot be written) and, per bay, why it shows a fault (``problem``: a
refusal, or a verdict whose record could not be journaled).

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "status.json"
    >>> write_status(path, {"state": "ready", "bays": []})
    >>> read_status(path)["state"]
    'ready'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from filters.errors import FieldtriageError
from filters.safe_files import read_regular_file

MAX_STATUS_BYTES = 16 << 20


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


def format_status(status: dict[str, Any]) -> str:
    lines = [
        f"agent: {status.get('state', '?')} (pid {status.get('pid', '?')}, "
        f"since {status.get('started', '?')})",
        f"filters: {len(status.get('filters', []))} in use"
        + "".join(
            f"\n  {f['name']} ({f['entries']:,} entries, {f['file']})" for f in status.get("filters", [])
        ),
    ]
    for problem in status.get("filter_problems", []):
        lines.append(f"  skipped: {problem}")
    journal = status.get("journal", {})
    lines.append(
        f"journal: {'healthy' if journal.get('healthy', True) else 'FAULT: ' + str(journal.get('error'))}"
    )
    for bay in status.get("bays", []):
        device = bay.get("device") or {}
        name = (
            " ".join(x for x in (device.get("vendor"), device.get("model")) if x)
            or device.get("devnode")
            or "-"
        )
        progress = bay.get("progress")
        shown = f" {progress * 100:.0f}%" if isinstance(progress, float) else ""
        lines.append(
            f"bay {bay['name']}: {bay['phase']}{shown}  lights {bay['signal']}  device {name}"
            + (f"  verdict {bay['verdict']}" if bay.get("verdict") else "")
        )
        if bay.get("problem"):
            lines.append(f"  problem: {bay['problem']}")
    return "\n".join(lines)
