"""A journal that could not be opened at start, tried again before every append.

A kiosk whose journal folder cannot be opened (a segment another key signed, a header that does not
verify, a folder it cannot write) must not vanish in a restart loop with every light dark: the
daemon runs with this journal instead, every bay shows the fault signal, ``agent status`` says why,
and each append (a device plugged in) first tries to open the real journal again, so the kiosk
recovers once the folder is mended, without a restart.

Example::

    >>> from filters.errors import FieldtriageError, JournalError
    >>> def broken() -> Journal:
    ...     raise JournalError("/var/lib/fieldtriage/journal", "last segment was not written by this key")
    >>> journal = ReopeningJournal(broken, JournalError("/var/lib/fieldtriage/journal", "unusable"))
    >>> try:
    ...     journal.append({"type": "test"})
    ... except JournalError as err:
    ...     print(err)
    /var/lib/fieldtriage/journal: last segment was not written by this key
    >>> journal.healthy
    False
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent.journal import Journal
from filters.errors import FieldtriageError, JournalError


class ReopeningJournal:
    """``Journal`` over ``opener``, which failed with ``error``: tried again at each append."""

    def __init__(self, opener: Callable[[], Journal], error: JournalError) -> None:
        self._opener = opener
        self._journal: Journal | None = None
        self._error = error

    def _try_open(self) -> Journal | None:
        try:
            self._journal = self._opener()
        except JournalError as err:
            self._error = err
        except FieldtriageError as err:  # a key file changed meanwhile
            self._error = JournalError(err.subject, err.reason)
        return self._journal

    @property
    def healthy(self) -> bool:
        return self._journal is not None and self._journal.healthy

    @property
    def last_error(self) -> JournalError | None:
        return self._error if self._journal is None else self._journal.last_error

    def append(self, record: Mapping[str, Any]) -> None:
        journal = self._journal or self._try_open()
        if journal is None:
            assert self._error is not None
            raise self._error
        journal.append(record)

    def rotate(self) -> None:
        rotate = getattr(self._journal, "rotate", None)
        if rotate is not None:
            rotate()

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
