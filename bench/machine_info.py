"""What machine a benchmark ran on, for the first line of its table (shared by every bench script)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine_line(*extras: str) -> str:
    """``2 x AMD EPYC, Python 3.11.7`` and any extra facts, comma separated."""
    return ", ".join([f"{os.cpu_count()} x {cpu_model()}", f"Python {platform.python_version()}", *extras])
