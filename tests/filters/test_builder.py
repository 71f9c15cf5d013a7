"""Sets, merging and item groups of the builder."""

from __future__ import annotations

import os

import pytest

from filters.builder import FilterBuilder
from filters.errors import FilterBuildError
from filters.importers import DigestEntry


def test_sets_per_kind_category_priority_and_merging() -> None:
    builder = FilterBuilder(name="t")
    digest = os.urandom(16)
    for _ in range(3):
        builder.add(DigestEntry("md5", digest, "a", "priority"))
    builder.add(DigestEntry("md5", digest, "b", "other"))
    built = builder.build_unsigned()
    assert [(s.kind, s.category, s.priority, s.count) for s in built.sets] == [
        ("md5", "a", "priority", 1),
        ("md5", "b", "other", 1),
    ]
    assert sorted(s.category for s in built.lookup_digest("md5", digest)) == ["a", "b"]


def test_item_groups_only_for_content_built_sets() -> None:
    builder = FilterBuilder(name="t")
    for _ in range(5):
        content = os.urandom(32)
        builder.add(DigestEntry("sample", content, "known", "priority", from_content=True))
        builder.add(DigestEntry("blake3", content[::-1], "known", "priority", from_content=True))
    builder.add(DigestEntry("blake3", os.urandom(32), "listed", "priority"))
    built = builder.build_unsigned()
    groups = {(s.kind, s.category): s.item_group for s in built.sets}
    assert groups[("sample", "known")] is not None
    assert groups[("sample", "known")] == groups[("blake3", "known")]
    assert groups[("blake3", "listed")] is None
    assert not built.fully_covered_by_samples()


def test_a_list_entry_breaks_coverage_of_its_set() -> None:
    builder = FilterBuilder(name="t")
    builder.add(DigestEntry("sample", os.urandom(32), "known", "priority", from_content=True))
    builder.add(DigestEntry("blake3", os.urandom(32), "known", "priority", from_content=True))
    builder.add(DigestEntry("blake3", os.urandom(32), "known", "priority", from_content=False))
    assert builder.build_unsigned().sample_cover() == {}


def test_refusals() -> None:
    with pytest.raises(FilterBuildError, match="no digests"):
        FilterBuilder(name="empty").build_unsigned()
    with pytest.raises(FilterBuildError, match="not a md5"):
        FilterBuilder(name="t").add(DigestEntry("md5", b"123", "k", "priority"))
