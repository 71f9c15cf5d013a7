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


def test_each_filter_in_use_says_when_it_expires(tmp_path: Path) -> None:
    """The status file's filter entries: ``expires``, ``expires_in_days``, ``expiring_soon``, and a
    warning line per filter expiring within the warning days (agent.toml filters.expiry_warning_days)."""
    filters, trust = tmp_path / "filters", tmp_path / "trust"
    filters.mkdir()
    trust.mkdir()
    key, public = generate_key_pair(tmp_path / "provider")
    shutil.copy(public, trust / "provider.pub")
    stamp = int(NOW.timestamp())
    make_filter(filters, key, "a-soon", expires=stamp + 2 * 86400 + 600)
    make_filter(filters, key, "b-later", expires=stamp + 20 * 86400)
    make_filter(filters, key, "c-never")
    clock = [NOW]
    store = FilterStore(filters, trust, clock=lambda: clock[0])
    store.refresh()
    described = {f["name"]: f for f in store.describe()}
    assert {n: (f["expires"], f["expires_in_days"], f["expiring_soon"]) for n, f in described.items()} == {
        "a-soon": ("2026-06-03T00:10:00Z", 2, True),
        "b-later": ("2026-06-21T00:00:00Z", 20, False),
        "c-never": (None, None, False),
    }
    assert store.expiry_warnings() == [
        f"{filters / 'a-soon.ftf'} (a-soon): expires in 2 days (2026-06-03T00:10:00Z)"
    ]
    clock[0] = NOW + dt.timedelta(days=1)  # counted from the clock at each call
    assert [f["expires_in_days"] for f in store.describe()] == [1, 19, None]
    clock[0] = NOW + dt.timedelta(days=7)
    assert store.refresh(), "a-soon expired: reloaded without it"
    assert [(f["name"], f["expires_in_days"], f["expiring_soon"]) for f in store.describe()] == [
        ("b-later", 13, True),
        ("c-never", None, False),
    ]
    assert store.expiry_warnings() == [
        f"{filters / 'b-later.ftf'} (b-later): expires in 13 days (2026-06-21T00:00:00Z)"
    ]
    quiet = FilterStore(filters, trust, clock=lambda: NOW, expiry_warning_days=0)
    quiet.refresh()
    assert quiet.expiry_warnings() == [] and not any(f["expiring_soon"] for f in quiet.describe())
