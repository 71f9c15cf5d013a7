"""The binary fuse filter: no false negatives, the expected false-positive rate, exact arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters.fuse import FuseFilter, FuseGeometry, mulhi_array, murmur64, murmur64_array


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 100, 1000, 50_000])
def test_every_key_is_found(n: int) -> None:
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 1 << 63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    fuse = FuseFilter.build(keys, seed=1)
    assert fuse.contains_many(keys).all()
    assert all(fuse.contains(int(k)) for k in keys[:500])
    assert fuse.geometry == FuseGeometry.for_size(n)
    assert fuse.geometry.is_consistent()


def test_duplicates_are_merged() -> None:
    keys = np.array([5, 5, 5, 7], dtype=np.uint64)
    fuse = FuseFilter.build(keys, seed=3)
    assert fuse.contains(5) and fuse.contains(7)
    assert fuse.geometry == FuseGeometry.for_size(2)


def test_scalar_and_vector_lookups_agree() -> None:
    rng = np.random.default_rng(7)
    fuse = FuseFilter.build(rng.integers(0, 1 << 62, size=5000, dtype=np.int64).astype(np.uint64), seed=2)
    queries = rng.integers(0, 1 << 63, size=5000, dtype=np.int64).astype(np.uint64)
    vector = fuse.contains_many(queries, fingerprint_bits=8)
    table = fuse.fingerprints
    g = fuse.geometry
    for key, expected in zip(queries[:2000], vector[:2000], strict=True):
        h = murmur64((int(key) + fuse.seed) % (1 << 64))
        h0 = (h * g.segment_count_length) >> 64
        h1 = (h0 + g.segment_length) ^ ((h >> 18) & (g.segment_length - 1))
        h2 = (h0 + 2 * g.segment_length) ^ (h & (g.segment_length - 1))
        residue = (h ^ (h >> 32)) ^ int(table[h0]) ^ int(table[h1]) ^ int(table[h2])
        assert ((residue & 0xFF) == 0) == bool(expected)
    assert fuse.contains_many(queries).tolist() == [fuse.contains(int(k)) for k in queries]


def test_false_positive_rate_of_truncated_fingerprints_matches_theory() -> None:
    """The 32-bit rate is too small to measure here; its 8-bit truncation must be near 2^-8."""
    rng = np.random.default_rng(11)
    fuse = FuseFilter.build(rng.integers(0, 1 << 62, size=20_000, dtype=np.int64).astype(np.uint64), seed=4)
    queries = rng.integers(1 << 62, 1 << 63, size=400_000, dtype=np.int64).astype(np.uint64)
    rate = fuse.contains_many(queries, fingerprint_bits=8).mean()
    assert abs(rate - 2**-8) < 0.25 * 2**-8
    assert fuse.contains_many(queries).sum() == 0


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=50), st.integers(1, (1 << 32) - 1))
def test_mulhi_is_exact(values: list[int], factor: int) -> None:
    got = mulhi_array(np.array(values, dtype=np.uint64), factor)
    assert got.tolist() == [(v * factor) >> 64 for v in values]


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=50))
def test_murmur_vector_equals_scalar(values: list[int]) -> None:
    assert murmur64_array(np.array(values, dtype=np.uint64)).tolist() == [murmur64(v) for v in values]


def test_geometry_consistency_rejects_forgeries() -> None:
    good = FuseGeometry.for_size(1000)
    assert good.is_consistent()
    assert not FuseGeometry(
        good.segment_length + 1, good.segment_count_length, good.array_length
    ).is_consistent()
    assert not FuseGeometry(
        good.segment_length, good.segment_count_length, good.array_length + 4
    ).is_consistent()
    assert not FuseGeometry(1 << 20, 1 << 20, 3 << 20).is_consistent()


def test_bytes_per_entry_is_about_four_and_a_half() -> None:
    g = FuseGeometry.for_size(1_000_000)
    assert g.array_length * 4 / 1_000_000 <= 4.6
