"""The kiosk journal: every scan leaves records the kiosk itself cannot read back.

``EncryptedJournal`` (sealed to the station, hash-chained, signed, fsync'd) and ``PlainJournal``
(JSON lines, for tests and unpaired kiosks) both satisfy ``Journal``. docs/journal-format.md
specifies the segment format; ``agent.journal.sync`` moves segments to a sync stick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from filters.errors import JournalError


class Journal(Protocol):
    """What the daemon needs. ``append`` returns only once the record is on disk, else raises
    ``JournalError``; ``healthy`` is False after a failed write until a later append succeeds;
    ``last_error`` keeps the last failure."""

    @property
    def healthy(self) -> bool: ...

    @property
    def last_error(self) -> JournalError | None: ...

    def append(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


from agent.journal.plain import PlainJournal  # noqa: E402
from agent.journal.writer import EncryptedJournal  # noqa: E402

__all__ = ["EncryptedJournal", "Journal", "PlainJournal"]
