"""Shared fixtures: provider keys and small synthetic filters."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from filters.builder import FilterBuilder
from filters.container import write_filter
from filters.importers import DigestEntry
from filters.keys import TrustStore, generate_key_pair, load_private_key


@dataclass
class Provider:
    private_path: Path
    public_path: Path
    key: Ed25519PrivateKey

    @property
    def trust(self) -> TrustStore:
        return TrustStore.from_paths([self.public_path])


@pytest.fixture
def provider(tmp_path: Path) -> Provider:
    private_path, public_path = generate_key_pair(tmp_path / "provider")
    return Provider(private_path, public_path, load_private_key(private_path))


def random_entries(count: int, kind: str = "md5", category: str = "known") -> list[DigestEntry]:
    size = {"md5": 16, "sha1": 20}.get(kind, 32)
    return [DigestEntry(kind, os.urandom(size), category, "priority") for _ in range(count)]


@pytest.fixture
def small_filter(tmp_path: Path, provider: Provider) -> tuple[Path, list[DigestEntry]]:
    entries = random_entries(200) + random_entries(50, "sha256", "other-cat")
    builder = FilterBuilder(name="test filter", provider="tests")
    builder.add_all(entries)
    path = tmp_path / "small.ftf"
    write_filter(path, builder.build_unsigned(), provider.key)
    return path, entries
