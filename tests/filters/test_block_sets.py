"""Block sets (filter format version 3): what goes in, what is left out, the file format, and old
files still loading. Synthetic data only: random bytes stand in for known material."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import blake3
import cbor2
import numpy as np
import pytest

from agent.cli import main
from filters.blocks import (
    BLOCK_SIZE,
    BlockCollector,
    BlockCutter,
    block_digest,
    block_item_of_bytes,
    digest_fd_with_blocks,
    is_pattern_block,
    read_common_digests,
)
from filters.builder import FilterBuilder
from filters.container import SIGNATURE_CONTEXT, load_filter, write_filter
from filters.digests import digest_path, sample_digest_of_bytes
from filters.errors import FilterRefused
from filters.importers import DigestEntry, ImportOptions, ImportReport
from filters.importers.folder import read_folder
from filters.keys import TrustStore
from filters.model import ContrabandFilter, derive_key

from .conftest import Provider

# A format 2 filter written by the release before block sets (git 5fd1f3b), with its provider's
# public key: three sets over pattern(20000) (sample, blake3: priority; md5: other), salt 0..31.
FORMAT_2_FILTER = (
    "pWZmb3JtYXRyZmllbGR0cmlhZ2UtZmlsdGVyZmtleV9pZFCdVxKnvqyiAal+nyJP+5shZ3BheWxvYWRZAxyrZG5hbWVwZm9y"
    "bWF0IDIgZml4dHVyZWRzYWx0WCAAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eH2RzZXRzg6pka2luZGZibGFrZTNk"
    "c2VlZBuDBr3zeSLk/2Vjb3VudAFoY2F0ZWdvcnlla25vd25ocHJpb3JpdHlocHJpb3JpdHlqaXRlbV9ncm91cABsYXJyYXlf"
    "bGVuZ3RoDGxmaW5nZXJwcmludHNYMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACcxTxkAAAAAG5z"
    "ZWdtZW50X2xlbmd0aAR0c2VnbWVudF9jb3VudF9sZW5ndGgEqmRraW5kY21kNWRzZWVkG0L5A0jWa1jBZWNvdW50AWhjYXRl"
    "Z29yeWlvdGhlci1jYXRocHJpb3JpdHllb3RoZXJqaXRlbV9ncm91cPZsYXJyYXlfbGVuZ3RoDGxmaW5nZXJwcmludHNYMAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACFMKE0AAAAAAAAAAG5zZWdtZW50X2xlbmd0aAR0c2VnbWVudF9j"
    "b3VudF9sZW5ndGgEqmRraW5kZnNhbXBsZWRzZWVkGxXtGpPPvsL5ZWNvdW50AWhjYXRlZ29yeWVrbm93bmhwcmlvcml0eWhw"
    "cmlvcml0eWppdGVtX2dyb3VwAGxhcnJheV9sZW5ndGgMbGZpbmdlcnByaW50c1gwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAArMVJggAAAAAAAAAAbnNlZ21lbnRfbGVuZ3RoBHRzZWdtZW50X2NvdW50X2xlbmd0aARnYnVpbGRlcnFm"
    "aWVsZHRyaWFnZSAwLjEuMGdjcmVhdGVkGmsPfqNnZXhwaXJlc/ZocHJvdmlkZXJldGVzdHNpZmlsdGVyX2lkeCAwZmViYTY3"
    "MWZlYWQ0YjJhYWRlYTBiY2MzMjI1MGZiMGpub3RfYmVmb3Jl9mtkZXNjcmlwdGlvbmBuZm9ybWF0X3ZlcnNpb24CaXNpZ25h"
    "dHVyZVhANcuycv4rVWzIl22IUksRoGH0IWV6VVmEE30I5O7ZQf2mDz0lo3/Eqjt93aopSAwCwdHoAQOfmybyVnhqCiHMCXBl"
    "bnZlbG9wZV92ZXJzaW9uAQ=="
)
FORMAT_2_PUBLIC_KEY = (
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA63bhHtoxE36yT315fNjqhP42JWM2gAPMOpS61SPIQss=\n"
    "-----END PUBLIC KEY-----\n"
)


def pattern(n: int) -> bytes:
    return bytes((7 * i + i // 251) % 256 for i in range(n))


def random_blocks(count: int) -> bytes:
    return os.urandom(count * BLOCK_SIZE)


def blocks_of(data: bytes) -> list[bytes]:
    return [data[o : o + BLOCK_SIZE] for o in range(0, len(data) - BLOCK_SIZE + 1, BLOCK_SIZE)]


def block_filter(*files: bytes, subsample: int = 1, common: list[bytes] | None = None) -> ContrabandFilter:
    builder = FilterBuilder(name="blocks", block_subsample=subsample)
    for data in files:
        builder.add_blocks(block_item_of_bytes(data, "known", "priority"))
    for data in common or []:
        builder.add_common_blocks([block_digest(b) for b in blocks_of(data)])
    return builder.build_unsigned()


def found(contraband: ContrabandFilter, block: bytes) -> bool:
    return bool(contraband.lookup_digest("block", block_digest(block)))


# -- old files -------------------------------------------------------------------------------------


def test_a_format_2_file_of_the_release_before_still_loads(tmp_path: Path) -> None:
    path, public = tmp_path / "v2.ftf", tmp_path / "old.pub"
    path.write_bytes(base64.b64decode(FORMAT_2_FILTER))
    public.write_text(FORMAT_2_PUBLIC_KEY)
    loaded = load_filter(path, TrustStore.from_paths([public]))
    assert loaded.metadata.format_version == 2
    assert [(s.kind, s.category, s.priority, s.block) for s in loaded.sets] == [
        ("blake3", "known", "priority", None),
        ("md5", "other-cat", "other", None),
        ("sample", "known", "priority", None),
    ]
    content = pattern(20000)
    assert loaded.lookup_digest("blake3", blake3.blake3(content).digest())
    assert loaded.lookup_digest("sample", sample_digest_of_bytes(content))
    assert loaded.lookup_digest("md5", hashlib.md5(content).digest())
    assert not loaded.lookup_digest("md5", bytes(16))
    assert not loaded.fully_covered_by_samples() and loaded.block_sets == []  # the md5 list is not


def test_a_filter_without_block_sets_is_still_written_as_version_2(
    tmp_path: Path, provider: Provider
) -> None:
    builder = FilterBuilder(name="files only")
    builder.add(DigestEntry("md5", os.urandom(16), "known", "priority"))
    write_filter(tmp_path / "f.ftf", builder.build_unsigned(), provider.key)
    payload = cbor2.loads(cbor2.loads((tmp_path / "f.ftf").read_bytes())["payload"])
    assert payload["format_version"] == 2
    assert load_filter(tmp_path / "f.ftf", provider.trust).metadata.format_version == 2


# -- what goes in ----------------------------------------------------------------------------------


def test_every_whole_block_at_4096_offsets_is_in_and_the_partial_block_is_not(
    tmp_path: Path, provider: Provider
) -> None:
    data = random_blocks(40) + os.urandom(1000)  # 40 whole blocks and a partial one
    write_filter(tmp_path / "b.ftf", block_filter(data), provider.key)
    loaded = load_filter(tmp_path / "b.ftf", provider.trust)
    assert loaded.metadata.format_version == 3
    (block_set,) = loaded.block_sets
    assert block_set.count == 40 and block_set.block is not None
    assert (block_set.block.subsample, block_set.block.items, block_set.block.dense_items) == (1, 1, 1)
    assert all(found(loaded, b) for b in blocks_of(data))
    assert not found(loaded, data[-1000:] + bytes(BLOCK_SIZE - 1000))
    assert not found(loaded, data[100 : 100 + BLOCK_SIZE])  # not at a multiple of 4096
    assert loaded.kinds == () and loaded.fully_covered_by_samples()


def test_pattern_blocks_are_left_out() -> None:
    fills = [bytes(BLOCK_SIZE), b"\xff" * BLOCK_SIZE, b"ab" * 2048, b"line of text\n" * 315 + b"l"]
    fills += [(os.urandom(512) * 8)]  # a 512-byte pattern repeated: still a pattern
    assert all(is_pattern_block(b) for b in fills)
    longer = os.urandom(1024) * 4  # period 1024: longer than a short pattern, probative
    assert not is_pattern_block(longer) and not is_pattern_block(os.urandom(BLOCK_SIZE))
    random_part = random_blocks(3)
    contraband = block_filter(b"".join(fills) + longer + random_part)
    assert not any(found(contraband, b) for b in fills)
    assert found(contraband, longer) and all(found(contraband, b) for b in blocks_of(random_part))
    assert contraband.block_sets[0].count == 4


def test_blocks_in_two_known_items_are_left_out_but_copies_are_one_item() -> None:
    shared = os.urandom(BLOCK_SIZE)
    first, second = random_blocks(5) + shared, shared + random_blocks(5)
    builder = FilterBuilder(name="x")
    for data in (first, second, first):  # the third is an exact copy of the first: one item
        builder.add_blocks(block_item_of_bytes(data, "known", "priority"))
    contraband = builder.build_unsigned()
    assert not found(contraband, shared)
    assert all(found(contraband, b) for b in blocks_of(first)[:5] + blocks_of(second)[1:])
    stats = builder.block_stats
    assert stats is not None and (stats.items, stats.copies, stats.shared, stats.kept) == (2, 1, 2, 10)
    assert contraband.block_sets[0].block is not None and contraband.block_sets[0].block.items == 2


def test_a_block_repeated_inside_one_item_stays() -> None:
    again = os.urandom(BLOCK_SIZE)
    contraband = block_filter(again + random_blocks(2) + again)
    assert found(contraband, again) and contraband.block_sets[0].count == 3


def test_common_blocks_are_left_out(tmp_path: Path) -> None:
    header = os.urandom(2 * BLOCK_SIZE)  # say, a format's boilerplate both files carry
    known, ordinary = header + random_blocks(6), header + random_blocks(3)
    contraband = block_filter(known, common=[ordinary])
    assert not any(found(contraband, b) for b in blocks_of(header))
    assert all(found(contraband, b) for b in blocks_of(known)[2:])
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "sub" / "ordinary.bin").write_bytes(ordinary + b"tail")
    (tmp_path / "corpus" / "link").symlink_to(tmp_path / "elsewhere")
    corpus = list(read_common_digests(tmp_path / "corpus"))
    assert corpus == [[block_digest(b) for b in blocks_of(ordinary)]]


def test_subsampling_keeps_the_first_probative_block_of_each_window_of_k() -> None:
    data = random_blocks(20)
    blocks = blocks_of(data)
    contraband = block_filter(data, subsample=4)
    assert [i for i, b in enumerate(blocks) if found(contraband, b)] == [0, 4, 8, 12, 16]
    info = contraband.block_sets[0].block
    assert info is not None and (info.subsample, info.items, info.dense_items) == (4, 1, 1)
    # a window whose first blocks are not probative keeps its next probative block
    holed = bytes(2 * BLOCK_SIZE) + data[2 * BLOCK_SIZE :]
    contraband = block_filter(holed, subsample=4)
    assert [i for i, b in enumerate(blocks_of(holed)) if found(contraband, b)] == [2, 4, 8, 12, 16]
    # a window with no probative block at all: the item is not dense
    empty_window = data[: 4 * BLOCK_SIZE] + bytes(4 * BLOCK_SIZE) + data[8 * BLOCK_SIZE :]
    info = block_filter(empty_window, subsample=4).block_sets[0].block
    assert info is not None and (info.items, info.dense_items) == (1, 0)


def test_subsampled_items_keep_at_least_floor_b_over_k_blocks() -> None:
    rng = np.random.default_rng(5)
    for k in (1, 2, 3, 8, 16):
        for blocks in (1, 7, 16, 100):
            data = rng.bytes(blocks * BLOCK_SIZE + int(rng.integers(0, BLOCK_SIZE)))
            kept = block_filter(data, subsample=k).block_sets[0].count
            assert kept == -(-blocks // k) >= blocks // k


def test_a_file_of_one_partial_block_gives_no_block_item(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "small.bin").write_bytes(os.urandom(4095))
    (tmp_path / "in" / "big.bin").write_bytes(random_blocks(3))
    report = ImportReport()
    items = list(read_folder(tmp_path / "in", ImportOptions(digests=("sample", "block")), report))
    kinds = [getattr(item, "kind", "block item") for item in items]
    assert kinds == ["sample", "block item", "sample"]  # big.bin then small.bin
    assert report.blocks[str(tmp_path / "in")] == 3


def test_one_read_gives_the_file_digests_and_the_blocks(tmp_path: Path) -> None:
    data = random_blocks(300) + os.urandom(77)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        digests, cutter = digest_fd_with_blocks(fd, len(data), ("sample", "blake3", "md5", "block"))
    finally:
        os.close(fd)
    assert digests == digest_path(tmp_path / "f", ("sample", "blake3", "md5"))
    assert cutter.digests == [block_digest(b) for b in blocks_of(data)]
    uneven = BlockCutter()
    for start in range(0, len(data), 1000):  # chunks that cut blocks anywhere
        uneven.feed(data[start : start + 1000])
    assert uneven.digests == cutter.digests
    assert uneven.item(len(data), "k", "other").identity == cutter.item(len(data), "k", "other").identity
    assert cutter.item(len(data) - 1, "k", "other").identity != cutter.item(len(data), "k", "other").identity


def test_folder_build_groups_the_block_set_with_the_file_sets() -> None:
    builder = FilterBuilder(name="g")
    data = random_blocks(4)
    builder.add_blocks(block_item_of_bytes(data, "known", "priority"))
    builder.add(DigestEntry("sample", sample_digest_of_bytes(data), "known", "priority", from_content=True))
    builder.add(DigestEntry("blake3", blake3.blake3(data).digest(), "known", "priority", from_content=True))
    contraband = builder.build_unsigned()
    assert [(s.kind, s.item_group) for s in contraband.sets] == [("blake3", 0), ("block", 0), ("sample", 0)]
    assert contraband.sample_cover() == {0: 2}  # the block set is no file's business
    assert contraband.fully_covered_by_samples() and contraband.kinds == ("blake3", "sample")


# -- one way ---------------------------------------------------------------------------------------


def test_the_file_holds_no_block_digest_and_no_block_content(tmp_path: Path, provider: Provider) -> None:
    data = random_blocks(64)
    write_filter(tmp_path / "b.ftf", block_filter(data), provider.key)
    raw = (tmp_path / "b.ftf").read_bytes()
    for block in blocks_of(data):
        assert block_digest(block) not in raw and block[:16] not in raw
        assert block_digest(block)[:8] not in raw  # nor any prefix a lookup could use directly
    loaded = load_filter(tmp_path / "b.ftf", provider.trust)
    keys = {derive_key(loaded.salt, "block", block_digest(b)).to_bytes(8, "little") for b in blocks_of(data)}
    assert not any(key in raw for key in keys)  # 32-bit fingerprints only


# -- the format ------------------------------------------------------------------------------------


def payload_of(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = cbor2.loads(cbor2.loads(path.read_bytes())["payload"])
    return loaded


def resign(path: Path, provider: Provider, payload: dict[str, Any]) -> None:
    envelope = cbor2.loads(path.read_bytes())
    envelope["payload"] = cbor2.dumps(payload, canonical=True)
    envelope["signature"] = provider.key.sign(SIGNATURE_CONTEXT + envelope["payload"])
    path.write_bytes(cbor2.dumps(envelope, canonical=True))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.update(format_version=2), "set 0: a block set needs format version 3"),
        (lambda p: p["sets"][0].pop("subsample"), "set 0: missing field 'subsample'"),
        (lambda p: p["sets"][0].update(subsample=0), "'subsample' below 1"),
        (lambda p: p["sets"][0].update(block_size=512), "field 'block_size' is not 4096"),
        (lambda p: p["sets"][0].update(dense_items=9), "more dense items than items"),
        (lambda p: p["sets"][0].update(count=99999), "table geometry does not match its count 99999"),
        (lambda p: p["sets"][1].update(subsample=1), "set 1: unknown field 'subsample'"),
    ],
)
def test_block_set_refusals(tmp_path: Path, provider: Provider, mutate: Any, reason: str) -> None:
    builder = FilterBuilder(name="r")
    data = random_blocks(5)
    builder.add_blocks(block_item_of_bytes(data, "known", "priority"))
    builder.add(DigestEntry("sample", sample_digest_of_bytes(data), "known", "priority", from_content=True))
    path = tmp_path / "r.ftf"
    write_filter(path, builder.build_unsigned(), provider.key)
    payload = payload_of(path)
    assert [s["kind"] for s in payload["sets"]] == ["block", "sample"]
    mutate(payload)
    resign(path, provider, payload)
    with pytest.raises(FilterRefused) as caught:
        load_filter(path, provider.trust)
    assert reason in str(caught.value) and str(caught.value).startswith(f"{path}: ")


# -- the command line ------------------------------------------------------------------------------


def test_filter_build_with_blocks_and_common_blocks(
    tmp_path: Path, provider: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    known, common = tmp_path / "known", tmp_path / "common"
    known.mkdir()
    common.mkdir()
    header = os.urandom(BLOCK_SIZE)
    (known / "a.jpg").write_bytes(header + random_blocks(30) + b"end")
    (known / "b.jpg").write_bytes(random_blocks(9))
    (common / "ordinary.jpg").write_bytes(header + random_blocks(2))
    out = tmp_path / "k.ftf"
    args = ["filter", "build", str(known), "-o", str(out), "--key", str(provider.private_path), "--name", "k"]
    status = main([*args, "--digests", "sample,blake3,block", "--block-subsample", "3",
                   "--common-blocks", str(common)])  # fmt: skip
    assert status == 0
    text = capsys.readouterr().out
    assert "blocks: 40 whole 4 KiB blocks of 2 files" in text and "1 in the common blocks" in text
    assert "block   known (priority): 14 entries, item group 0, 1 in 3 blocks, 2 of 2 items dense" in text
    loaded = load_filter(out, provider.trust)
    assert not found(loaded, header)
    lookup = [
        "filter",
        "lookup",
        str(out),
        "--trust",
        str(provider.public_path),
        "--file",
        str(known / "a.jpg"),
    ]
    assert main(lookup) == 0
    assert '"blocks": {"whole_blocks": 31, "sets": [{"set": 1, "found": 11}]}' in capsys.readouterr().out
    assert main([*args, "--common-blocks", str(common)]) == 2
    assert "add 'block' to --digests" in capsys.readouterr().err


def test_collector_memory_stays_compact() -> None:
    collector = BlockCollector(bytes(32))
    for _ in range(10):
        collector.add(block_item_of_bytes(random_blocks(100), "known", "priority"))
    assert collector.blocks_of(("known", "priority")) == 1000
    built = collector.finish()
    assert built.sets[("known", "priority")].keys.dtype == np.uint64
    assert built.stats.kept == 1000 and built.stats.items == 10
