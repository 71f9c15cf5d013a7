"""The strict CBOR decoder accepts what cbor2 writes and refuses everything else cleanly."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from filters.strict_cbor import MAX_DEPTH, CborError, decode

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 64), (1 << 64) - 1) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)


def normalise(value: object) -> object:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(values)
def test_round_trip(value: object) -> None:
    if depth(value) > MAX_DEPTH:
        return
    assert normalise(decode(cbor2.dumps(value, canonical=True))) == value


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_refuse(data: bytes) -> None:
    with contextlib.suppress(CborError):
        decode(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex("5f41614162ff"), "unsupported additional information"),  # indefinite bytes
        (bytes.fromhex("c11a514b67b0"), "unsupported item"),  # tag
        (bytes.fromhex("f93c00"), "unsupported item"),  # half float
        (bytes.fromhex("5b00000000ffffffff"), "runs past the end"),  # huge length
        (bytes.fromhex("9bffffffffffffffff"), "runs past the end"),  # huge array
        (bytes.fromhex("a2616101616102"), "duplicate map key"),
        (bytes.fromhex("a10101"), "not text"),
        (bytes.fromhex("6261"), "runs past the end"),
        (bytes.fromhex("0001"), "trailing"),
        (b"", "truncated"),
        (bytes.fromhex("62ff00"), "not UTF-8"),
        (b"\x81" * 20 + b"\x00", "nested deeper"),
    ],
)
def test_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(CborError, match=reason):
        decode(data)


def test_byte_strings_are_not_copied() -> None:
    data = cbor2.dumps({"t": b"x" * 1000})
    assert isinstance(decode(data)["t"], memoryview)
