"""``ContrabandFilter.lookup_many`` gives the same answers as ``lookup_digest`` per digest."""

from __future__ import annotations

import random

import pytest

from filters.builder import FilterBuilder
from filters.importers import DigestEntry
from filters.model import VECTOR_LOOKUP_MIN, ContrabandFilter


def _filter(known: list[bytes], other: list[bytes]) -> ContrabandFilter:
    builder = FilterBuilder(name="batch")
    for digest in known:
        builder.add(DigestEntry("md5", digest, "known", "priority"))
    for digest in other:
        builder.add(DigestEntry("md5", digest, "other", "other"))
    builder.add(DigestEntry("sha1", bytes(20), "known", "priority"))
    return builder.build_unsigned()


@pytest.mark.parametrize("count", [1, VECTOR_LOOKUP_MIN - 1, VECTOR_LOOKUP_MIN, 300])
def test_lookup_many_equals_lookup_digest(count: int) -> None:
    rng = random.Random(count)
    known = [rng.randbytes(16) for _ in range(50)]
    other = [rng.randbytes(16) for _ in range(50)]
    contraband = _filter(known, other)
    queries = [rng.randbytes(16) for _ in range(count)]
    for i in range(0, count, 3):
        queries[i] = rng.choice(known + other)
    got: dict[int, list[int]] = {}
    for filter_set, indices in contraband.lookup_many("md5", queries):
        assert indices == sorted(indices) and indices
        for i in indices:
            got.setdefault(i, []).append(filter_set.index)
    expected = {
        i: [s.index for s in contraband.lookup_digest("md5", q)]
        for i, q in enumerate(queries)
        if contraband.lookup_digest("md5", q)
    }
    assert got == expected
    assert len(got) == len(range(0, count, 3))


def test_lookup_many_of_nothing_or_an_unknown_kind() -> None:
    contraband = _filter([bytes(16)], [])
    assert contraband.lookup_many("md5", []) == []
    assert contraband.lookup_many("sha256", [bytes(32)]) == []
    assert [(s.kind, i) for s, i in contraband.lookup_many("sha1", [bytes(20), b"\x01" * 20])] == [
        ("sha1", [0])
    ]
