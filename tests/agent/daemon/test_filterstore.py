"""The kiosk's filter store: valid trusted filters only, each refusal with its reason, no reloads."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from agent.daemon.filterstore import FilterStore
from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.importers import DigestEntry
from filters.keys import generate_key_pair, load_private_key

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def make_filter(folder: Path, key: Path, name: str, **dates: int) -> Path:
    builder = FilterBuilder(name=name, **dates)  # type: ignore[arg-type]
    builder.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    path = folder / f"{name}.ftf"
    write_filter(path, builder.build_unsigned(), load_private_key(key))
    return path


def test_only_valid_trusted_filters_are_used(tmp_path: Path) -> None:
    filters, trust = tmp_path / "filters", tmp_path / "trust"
    filters.mkdir()
    trust.mkdir()
    key, public = generate_key_pair(tmp_path / "provider")
    shutil.copy(public, trust / "provider.pub")
    other, _ = generate_key_pair(tmp_path / "stranger")
    stamp = int(NOW.timestamp())
    make_filter(filters, key, "good")
    make_filter(filters, key, "expired", expires=stamp - 1)
    make_filter(filters, other, "untrusted")
    (filters / "broken.ftf").write_bytes(b"not a filter")
    clock = [NOW]
    store = FilterStore(filters, trust, clock=lambda: clock[0])
    assert store.refresh()
    assert [f.metadata.name for f in store.filters] == ["good"]
    reasons = " | ".join(store.problems)
    assert "expired.ftf: expired at" in reasons
    assert "untrusted.ftf: signer" in reasons and "is not in the trust store" in reasons
    assert "broken.ftf: not a filter file" in reasons
    assert not store.refresh(), "nothing changed: nothing is loaded again"


def test_unchanged_filters_are_kept_and_expiry_is_noticed(tmp_path: Path) -> None:
    filters, trust = tmp_path / "filters", tmp_path / "trust"
    filters.mkdir()
    trust.mkdir()
    key, public = generate_key_pair(tmp_path / "provider")
    shutil.copy(public, trust / "provider.pub")
    stamp = int(NOW.timestamp())
    make_filter(filters, key, "short", expires=stamp + 60)
    clock = [NOW]
    store = FilterStore(filters, trust, clock=lambda: clock[0])
    store.refresh()
    (first,) = store.filters
    make_filter(filters, key, "second")
    assert store.refresh()
    assert first in store.filters, "the unchanged filter was not loaded a second time"
    clock[0] = NOW + dt.timedelta(minutes=2)
    assert store.refresh(), "a filter in use expired: reload at once, not at midnight"
    assert [f.metadata.name for f in store.filters] == ["second"]
    assert any("short.ftf: expired" in p for p in store.problems)


def test_no_filter_and_no_key_are_reported(tmp_path: Path) -> None:
    (tmp_path / "filters").mkdir()
    (tmp_path / "trust").mkdir()
    store = FilterStore(tmp_path / "filters", tmp_path / "trust")
    store.refresh()
    assert store.filters == []
    assert store.problems == [f"{tmp_path / 'trust'}: no trusted provider key"]
